//! CloudWatch alarms behind `AlarmWatch`: DescribeAlarms by name, each alarm's
//! own state read (no StateValue filter: moto applies only one filter at a
//! time, and reading the state needs no second one).

use crate::domain::ports::{AlarmError, AlarmWatch};
use aws_sdk_cloudwatch::types::StateValue;
use tracing::instrument;

/// DescribeAlarms takes at most 100 alarm names per call.
const NAMES_PER_CALL: usize = 100;

pub struct CloudWatchAlarms {
    client: aws_sdk_cloudwatch::Client,
}

impl CloudWatchAlarms {
    pub fn new(client: aws_sdk_cloudwatch::Client) -> Self {
        Self { client }
    }
}

impl AlarmWatch for CloudWatchAlarms {
    #[instrument(skip_all, fields(alarms = names.len()))]
    async fn firing(&self, names: &[String]) -> Result<Vec<String>, AlarmError> {
        let mut found = Vec::new();
        let mut firing = Vec::new();
        for chunk in names.chunks(NAMES_PER_CALL) {
            let mut pages = self
                .client
                .describe_alarms()
                .set_alarm_names(Some(chunk.to_vec()))
                .max_records(100)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page
                    .map_err(|e| AlarmError::Unavailable(super::logged_failure("CloudWatch", "DescribeAlarms", &e)))?;
                for alarm in page.metric_alarms() {
                    let name = alarm.alarm_name().unwrap_or_default().to_owned();
                    if alarm.state_value() == Some(&StateValue::Alarm) {
                        firing.push(name.clone());
                    }
                    found.push(name);
                }
                for alarm in page.composite_alarms() {
                    let name = alarm.alarm_name().unwrap_or_default().to_owned();
                    if alarm.state_value() == Some(&StateValue::Alarm) {
                        firing.push(name.clone());
                    }
                    found.push(name);
                }
            }
        }
        let unknown: Vec<String> = names.iter().filter(|n| !found.contains(n)).cloned().collect();
        if !unknown.is_empty() {
            return Err(AlarmError::Unknown(unknown));
        }
        Ok(firing)
    }
}
