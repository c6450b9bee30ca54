//! Per-function log buffer: each instance's stdout and stderr, line by line, tagged with the request id
//! that was running, plus the platform's START / END / REPORT lines. Bounded: old lines fall off.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use crate::lock;

#[derive(Debug, Clone, serde::Serialize)]
pub struct LogLine {
    pub at_ms: i64,
    pub request_id: Option<Arc<str>>,
    pub instance: u64,
    pub text: String,
}

pub(crate) struct LogBuffer {
    lines: Mutex<VecDeque<LogLine>>,
    cap: usize,
}

impl LogBuffer {
    pub fn new(cap: usize) -> Self {
        Self { lines: Mutex::new(VecDeque::new()), cap }
    }

    pub fn push(&self, line: LogLine) {
        let mut lines = lock(&self.lines);
        if lines.len() == self.cap {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    pub fn since(&self, since_ms: i64) -> Vec<LogLine> {
        lock(&self.lines).iter().filter(|l| l.at_ms >= since_ms).cloned().collect()
    }

    /// The lines of one invocation.
    pub fn of_request(&self, request_id: &str) -> Vec<String> {
        lock(&self.lines)
            .iter()
            .filter(|l| l.request_id.as_deref() == Some(request_id))
            .map(|l| l.text.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_filterable() {
        let b = LogBuffer::new(2);
        let id: Arc<str> = Arc::from("r1");
        for (i, t) in ["a", "b", "c"].iter().enumerate() {
            b.push(LogLine { at_ms: i as i64, request_id: Some(id.clone()), instance: 1, text: t.to_string() });
        }
        assert_eq!(b.of_request("r1"), vec!["b", "c"]);
        assert_eq!(b.since(2).len(), 1);
    }
}
