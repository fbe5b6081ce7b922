//! Per-user request limits (reference §5) with governor: `X-RateLimit-Limit` and
//! `-Remaining` on every response that passed the limiter, and a 429 in the error
//! envelope with `Retry-After` and `X-RateLimit-Reset` when the budget is spent.

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use std::num::NonZeroU32;
use std::sync::Arc;

/// Limits are per user: the key is the user's id.
type Inner =
    RateLimiter<i64, DefaultKeyedStateStore<i64>, DefaultClock, StateInformationMiddleware>;

#[derive(Clone)]
pub struct Limiter {
    inner: Arc<Inner>,
    limit: u32,
    clock: DefaultClock,
}

pub enum Decision {
    Allowed { limit: u32, remaining: u32 },
    Limited { limit: u32, retry_after_secs: u64 },
}

impl Limiter {
    pub fn per_minute(n: u32) -> Limiter {
        let n = NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN);
        let inner = RateLimiter::keyed(Quota::per_minute(n))
            .with_middleware::<StateInformationMiddleware>();
        Limiter {
            inner: Arc::new(inner),
            limit: n.get(),
            clock: DefaultClock::default(),
        }
    }

    /// `n` requests per `period`, replenished evenly.
    pub fn per_period(n: u32, period: std::time::Duration) -> Limiter {
        let n = NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(period / n.get())
            .unwrap_or_else(|| Quota::per_minute(n))
            .allow_burst(n);
        let inner = RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>();
        Limiter {
            inner: Arc::new(inner),
            limit: n.get(),
            clock: DefaultClock::default(),
        }
    }

    pub fn check(&self, user_id: i64) -> Decision {
        match self.inner.check_key(&user_id) {
            Ok(snapshot) => Decision::Allowed {
                limit: self.limit,
                remaining: snapshot.remaining_burst_capacity(),
            },
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                Decision::Limited {
                    limit: self.limit,
                    retry_after_secs: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
                }
            }
        }
    }

    /// Forgets idle keys so memory stays bounded.
    pub fn retain_recent(&self) {
        self.inner.retain_recent();
        self.inner.shrink_to_fit();
    }
}
