//! Who may use the admin API: two bearer tokens with a scope each, so the one that reads a host's
//! logs cannot also slow or fail its metadata API (`logs`: `/logs`, `/logs/<name>`; `fault`:
//! `/fault`), compared in constant time; and a per-caller brake on failed attempts, so a token
//! cannot be guessed at line rate: after [`MAX_FAILURES`] failures within [`FAILURE_WINDOW`] a
//! caller address gets 429 for every request (a right token included) until the window ends.
//! Every refusal is counted by reason.

use crate::metrics::ADMIN_AUTH_FAILURES_TOTAL;
use service::secrets::Secret;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// Failed attempts a caller address may make per window.
pub(crate) const MAX_FAILURES: u32 = 10;
/// The window of [`MAX_FAILURES`].
pub(crate) const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Caller addresses remembered at most: past it, addresses whose window ended are forgotten, and
/// if none has, new failing callers are refused outright (a flood from many addresses cannot
/// grow the table).
const MAX_CALLERS: usize = 16_384;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// List and fetch the host's log files.
    Logs,
    /// Read and switch fault injection.
    Fault,
}

impl Scope {
    /// The scope a request path needs.
    pub(crate) fn of_path(path: &str) -> Scope {
        if path == "/fault" || path.starts_with("/fault/") {
            Scope::Fault
        } else {
            Scope::Logs
        }
    }
}

/// The admin API's tokens.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AdminTokens {
    /// Reads logs.
    pub logs: Secret,
    /// Switches faults; without it `/fault` is refused.
    pub fault: Option<Secret>,
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// No `Authorization: Bearer` header.
    Missing,
    /// A token that is none of the configured ones.
    Wrong,
    /// A valid token of the other scope.
    OutOfScope,
    /// Too many failures from this address; try again after this long.
    Throttled(Duration),
}

impl Refusal {
    fn reason(self) -> &'static str {
        match self {
            Refusal::Missing => "missing",
            Refusal::Wrong => "wrong",
            Refusal::OutOfScope => "scope",
            Refusal::Throttled(_) => "throttled",
        }
    }
}

/// Checks tokens and remembers failures per caller address.
#[derive(Debug)]
pub(crate) struct Gate {
    tokens: AdminTokens,
    failures: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl Gate {
    pub(crate) fn new(tokens: AdminTokens) -> Self {
        for reason in ["missing", "wrong", "scope", "throttled"] {
            metrics::counter!(ADMIN_AUTH_FAILURES_TOTAL, "reason" => reason).increment(0);
        }
        Gate {
            tokens,
            failures: Mutex::default(),
        }
    }

    /// Whether `presented` may do what `scope` covers, for `caller`.
    pub(crate) fn check(
        &self,
        caller: IpAddr,
        presented: Option<&str>,
        scope: Scope,
    ) -> Result<(), Refusal> {
        let now = Instant::now();
        let result = match self.throttled(caller, now) {
            Some(wait) => Err(Refusal::Throttled(wait)),
            None => self.judge(presented, scope),
        };
        if let Err(refusal) = result {
            metrics::counter!(ADMIN_AUTH_FAILURES_TOTAL, "reason" => refusal.reason()).increment(1);
            if !matches!(refusal, Refusal::Throttled(_)) {
                self.failed(caller, now);
            }
        }
        result
    }

    fn judge(&self, presented: Option<&str>, scope: Scope) -> Result<(), Refusal> {
        let Some(presented) = presented else {
            return Err(Refusal::Missing);
        };
        // Both compared every time, in constant time: timing says nothing about either token.
        let is = |token: Option<&Secret>| {
            token.is_some_and(|t| bool::from(presented.as_bytes().ct_eq(t.expose().as_bytes())))
        };
        let (logs, fault) = (is(Some(&self.tokens.logs)), is(self.tokens.fault.as_ref()));
        match (scope, logs, fault) {
            (Scope::Logs, true, _) | (Scope::Fault, _, true) => Ok(()),
            (_, true, _) | (_, _, true) => Err(Refusal::OutOfScope),
            _ => Err(Refusal::Wrong),
        }
    }

    /// How long `caller` must still wait, if it is over its failures.
    fn throttled(&self, caller: IpAddr, now: Instant) -> Option<Duration> {
        let failures = self.failures.lock().ok()?;
        let (since, count) = failures.get(&caller)?;
        let ends = *since + FAILURE_WINDOW;
        (*count >= MAX_FAILURES && now < ends).then(|| ends - now)
    }

    fn failed(&self, caller: IpAddr, now: Instant) {
        let Ok(mut failures) = self.failures.lock() else {
            return;
        };
        if failures.len() >= MAX_CALLERS && !failures.contains_key(&caller) {
            failures.retain(|_, (since, _)| now < *since + FAILURE_WINDOW);
            if failures.len() >= MAX_CALLERS {
                return;
            }
        }
        let entry = failures.entry(caller).or_insert((now, 0));
        if now >= entry.0 + FAILURE_WINDOW {
            *entry = (now, 0);
        }
        entry.1 += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate() -> Gate {
        Gate::new(AdminTokens {
            logs: Secret::new("logs-token-0123456789".into()),
            fault: Some(Secret::new("fault-token-0123456789".into())),
        })
    }

    #[test]
    fn each_token_opens_its_own_scope_only() {
        let gate = gate();
        let caller: IpAddr = [127, 0, 0, 1].into();
        assert_eq!(
            gate.check(caller, Some("logs-token-0123456789"), Scope::Logs),
            Ok(())
        );
        assert_eq!(
            gate.check(caller, Some("fault-token-0123456789"), Scope::Fault),
            Ok(())
        );
        assert_eq!(
            gate.check(caller, Some("logs-token-0123456789"), Scope::Fault),
            Err(Refusal::OutOfScope)
        );
        assert_eq!(
            gate.check(caller, Some("fault-token-0123456789"), Scope::Logs),
            Err(Refusal::OutOfScope)
        );
        assert_eq!(gate.check(caller, None, Scope::Logs), Err(Refusal::Missing));
        assert_eq!(Scope::of_path("/fault"), Scope::Fault);
        assert_eq!(Scope::of_path("/logs/x"), Scope::Logs);
    }

    #[test]
    fn a_guessing_caller_is_braked_and_others_are_not() {
        let gate = gate();
        let guesser: IpAddr = [10, 0, 0, 9].into();
        for _ in 0..MAX_FAILURES {
            assert_eq!(
                gate.check(guesser, Some("guess"), Scope::Logs),
                Err(Refusal::Wrong)
            );
        }
        // Even the right token is refused now: a brake that let it through would confirm a guess.
        let refused = gate.check(guesser, Some("logs-token-0123456789"), Scope::Logs);
        assert!(matches!(refused, Err(Refusal::Throttled(wait)) if wait <= FAILURE_WINDOW));
        let other: IpAddr = [10, 0, 0, 10].into();
        assert_eq!(
            gate.check(other, Some("logs-token-0123456789"), Scope::Logs),
            Ok(())
        );
    }
}
