//! Limits on what a peer can make a server hold: a minimum transfer rate for bodies, and
//! bounded reads of responses.

use std::time::{Duration, Instant};

use futures::StreamExt;

/// A minimum transfer rate after a grace period: a body that falls behind it is cut off,
/// so a peer sending a byte now and then cannot hold a buffer, a slot or a task for long.
#[derive(Debug, Clone, Copy)]
pub struct MinRate {
    started: Instant,
    grace: Duration,
    bytes_per_sec: u64,
}

impl MinRate {
    /// Starts the clock now: after `grace`, at least `bytes_per_sec` on average.
    pub fn new(grace: Duration, bytes_per_sec: u64) -> Self {
        Self { started: Instant::now(), grace, bytes_per_sec: bytes_per_sec.max(1) }
    }

    /// When the transfer falls behind, having received `received` bytes so far: the next
    /// bytes must arrive before then.
    pub fn deadline(&self, received: u64) -> tokio::time::Instant {
        let earned = Duration::from_secs_f64(received as f64 / self.bytes_per_sec as f64);
        tokio::time::Instant::from_std(self.started + self.grace + earned)
    }
}

/// Why a bounded read of a response failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// More bytes than the caller expects.
    #[error("the answer is larger than the {0} bytes expected")]
    TooLarge(u64),
    /// The transfer failed or fell below the minimum rate.
    #[error("the answer could not be read: {0}")]
    Transfer(String),
}

/// Reads a response body of at most `limit` bytes: a longer one is refused as soon as its
/// declared length or its bytes pass the limit, and one arriving slower than `rate` is cut off.
pub async fn read_response(resp: reqwest::Response, limit: u64, rate: MinRate) -> Result<Vec<u8>, ReadError> {
    if resp.content_length().is_some_and(|n| n > limit) {
        return Err(ReadError::TooLarge(limit));
    }
    let mut out = Vec::with_capacity(resp.content_length().unwrap_or(0).min(limit) as usize);
    let mut stream = resp.bytes_stream();
    loop {
        let next = tokio::time::timeout_at(rate.deadline(out.len() as u64), stream.next())
            .await
            .map_err(|_| ReadError::Transfer("it arrived too slowly".into()))?;
        match next {
            None => return Ok(out),
            Some(Err(e)) => return Err(ReadError::Transfer(crate::root_cause(&e))),
            Some(Ok(chunk)) => {
                if out.len() as u64 + chunk.len() as u64 > limit {
                    return Err(ReadError::TooLarge(limit));
                }
                out.extend_from_slice(&chunk);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deadline_moves_with_the_bytes_received() {
        let rate = MinRate::new(Duration::from_secs(10), 1_000);
        let start = rate.deadline(0);
        assert_eq!(rate.deadline(1_000) - start, Duration::from_secs(1));
        assert_eq!(rate.deadline(60_000) - start, Duration::from_secs(60));
        // A zero rate is taken as one byte a second, not a division by zero.
        let slowest = MinRate::new(Duration::ZERO, 0);
        assert_eq!(slowest.deadline(5) - slowest.deadline(0), Duration::from_secs(5));
    }
}
