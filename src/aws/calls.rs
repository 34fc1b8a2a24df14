//! Counts AWS calls by service and operation, and the time spent waiting on
//! them: an SDK interceptor on every client. The Lambda logs each
//! invocation's figures; tests and the benchmark read them. Every attempt is
//! counted, retries included: each is a round trip.

use aws_sdk_dynamodb::config::interceptors::{
    BeforeDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_types::config_bag::{Storable, StoreReplace};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Debug, Default)]
pub struct CallCounter(Arc<Mutex<Tally>>);

#[derive(Debug, Default)]
struct Tally {
    calls: BTreeMap<String, u64>,
    waiting: Duration,
}

/// When the attempt in flight was handed to the HTTP client.
#[derive(Debug, Clone)]
struct Transmitted(Instant);

impl Storable for Transmitted {
    type Storer = StoreReplace<Self>;
}

impl CallCounter {
    /// The counts since the last `take`, e.g. `{"DynamoDB.TransactWriteItems": 2}`, and a fresh start.
    pub fn take(&self) -> BTreeMap<String, u64> {
        self.take_all().0
    }

    /// Counts and time spent waiting for AWS since the last take.
    fn take_all(&self) -> (BTreeMap<String, u64>, Duration) {
        let tally = std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()));
        (tally.calls, tally.waiting)
    }

    /// For a log line: `total (Service.Operation n, ...)` and milliseconds spent waiting on AWS.
    pub fn take_summary(&self) -> (String, f64) {
        let (counts, waiting) = self.take_all();
        let total: u64 = counts.values().sum();
        let each: Vec<String> = counts.iter().map(|(op, n)| format!("{op} {n}")).collect();
        (format!("{total} ({})", each.join(", ")), waiting.as_secs_f64() * 1000.0)
    }
}

impl Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "CallCounter"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let operation =
            cfg.load::<Metadata>().map(|m| format!("{}.{}", m.service(), m.name())).unwrap_or_else(|| "unknown".into());
        *self.0.lock().unwrap_or_else(|e| e.into_inner()).calls.entry(operation).or_default() += 1;
        cfg.interceptor_state().store_put(Transmitted(Instant::now()));
        Ok(())
    }

    fn read_after_transmit(
        &self,
        _context: &BeforeDeserializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(Transmitted(at)) = cfg.load::<Transmitted>() {
            self.0.lock().unwrap_or_else(|e| e.into_inner()).waiting += at.elapsed();
        }
        Ok(())
    }
}
