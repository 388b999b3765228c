//! Retry decisions and backoff delays.

use std::time::Duration;

use meridian_model::{Backoff, RetryOn, RetryPolicy};

use crate::executor::StepError;

/// The policy of a step without `retry:`: one attempt.
pub fn no_retry() -> RetryPolicy {
    RetryPolicy {
        attempts: 1,
        backoff: Backoff::Constant,
        initial: Duration::ZERO,
        max: Duration::ZERO,
        jitter: false,
        on: vec![RetryOn::Retryable, RetryOn::Timeout],
    }
}

/// Whether `policy` retries this error at all (attempts left is the caller's business).
pub fn retries(policy: &RetryPolicy, err: &StepError) -> bool {
    let kind = match err {
        StepError::Retryable(_) => RetryOn::Retryable,
        StepError::Timeout(_) => RetryOn::Timeout,
        StepError::Fatal(_) => RetryOn::Fatal,
        // Wrong inputs stay wrong; a cancelled run must not start new attempts.
        StepError::InvalidInput(_) | StepError::Cancelled => return false,
    };
    policy.on.contains(&kind)
}

/// The delay before attempt `next` (2 for the first retry), before jitter.
pub fn base_delay(policy: &RetryPolicy, next: u32) -> Duration {
    let d = match policy.backoff {
        Backoff::Constant => policy.initial,
        Backoff::Exponential => {
            let exp = next.saturating_sub(2).min(30);
            policy.initial.saturating_mul(1u32 << exp)
        }
    };
    if policy.max.is_zero() {
        d
    } else {
        d.min(policy.max)
    }
}

/// The delay with full jitter applied when the policy asks for it: uniform in `[0, base]`.
/// Full jitter spreads retries of many runs hitting the same dead endpoint (AWS architecture blog,
/// "Exponential Backoff And Jitter").
pub fn delay(policy: &RetryPolicy, next: u32) -> Duration {
    let base = base_delay(policy, next);
    if policy.jitter && !base.is_zero() {
        let nanos = base.as_nanos().min(u64::MAX as u128) as u64;
        Duration::from_nanos(rand::random_range(0..=nanos))
    } else {
        base
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(backoff: Backoff, jitter: bool) -> RetryPolicy {
        RetryPolicy {
            attempts: 6,
            backoff,
            initial: Duration::from_millis(100),
            max: Duration::from_millis(700),
            jitter,
            on: vec![RetryOn::Retryable],
        }
    }

    #[test]
    fn exponential_doubles_and_caps() {
        let p = policy(Backoff::Exponential, false);
        let got: Vec<u128> = (2..=6).map(|n| base_delay(&p, n).as_millis()).collect();
        assert_eq!(got, vec![100, 200, 400, 700, 700]);
    }

    #[test]
    fn constant_stays() {
        let p = policy(Backoff::Constant, false);
        assert!((2..=6).all(|n| base_delay(&p, n) == Duration::from_millis(100)));
    }

    #[test]
    fn jitter_stays_within_bounds() {
        let p = policy(Backoff::Exponential, true);
        for n in 2..=6 {
            for _ in 0..200 {
                assert!(delay(&p, n) <= base_delay(&p, n));
            }
        }
    }

    #[test]
    fn classification() {
        let p = policy(Backoff::Constant, false);
        assert!(retries(&p, &StepError::Retryable("x".into())));
        assert!(!retries(&p, &StepError::Timeout(Duration::from_secs(1))));
        assert!(!retries(&p, &StepError::Fatal("x".into())));
        assert!(!retries(&p, &StepError::InvalidInput("x".into())));
    }
}
