//! CloudWatch alarms behind `AlarmWatch`: DescribeAlarms by name, each alarm's
//! own state read (no StateValue filter: moto applies only one filter at a
//! time, and reading the state needs no second one). Every alarm type is
//! asked for: without `AlarmTypes` CloudWatch returns metric alarms only, and
//! a composite alarm (the usual way to combine signals) would read as unknown.

use crate::domain::ports::{AlarmError, AlarmWatch};
use aws_sdk_cloudwatch::types::{AlarmType, StateValue};
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
                .set_alarm_types(Some(vec![AlarmType::MetricAlarm, AlarmType::CompositeAlarm, AlarmType::LogAlarm]))
                .max_records(100)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page
                    .map_err(|e| AlarmError::Unavailable(super::logged_failure("CloudWatch", "DescribeAlarms", &e)))?;
                let states = (page.metric_alarms().iter().map(|a| (a.alarm_name(), a.state_value())))
                    .chain(page.composite_alarms().iter().map(|a| (a.alarm_name(), a.state_value())))
                    .chain(page.log_alarms().iter().map(|a| (a.alarm_name(), a.state_value())));
                for (name, state) in states {
                    let name = name.unwrap_or_default().to_owned();
                    if state == Some(&StateValue::Alarm) {
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
