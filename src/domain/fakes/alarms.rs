//! Rollback alarms as CloudWatch would answer them.

use super::*;

/// Rollback alarms as CloudWatch would answer: the names in `firing` are in
/// ALARM; a name in `unknown` does not exist.
#[derive(Default)]
pub struct MemoryAlarms {
    pub firing: Mutex<Vec<String>>,
    pub unknown: Mutex<Vec<String>>,
    pub yields: Yields,
}

impl AlarmWatch for MemoryAlarms {
    async fn firing(&self, names: &[String]) -> Result<Vec<String>, AlarmError> {
        self.yields.point().await;
        let unknown: Vec<String> = names.iter().filter(|n| self.unknown.lock().unwrap().contains(n)).cloned().collect();
        if !unknown.is_empty() {
            return Err(AlarmError::Unknown(unknown));
        }
        Ok(names.iter().filter(|n| self.firing.lock().unwrap().contains(n)).cloned().collect())
    }
}
