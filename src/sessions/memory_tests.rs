//! Unit tests of [`MemoryStore`]: bounds, expiry, eviction, busy marks and
//! ownership, on a clock the tests move by hand.

use super::*;
use crate::protocol::{ChatMessage, Role, TurnStatus};
use crate::sessions::TurnReply;

fn limits() -> SessionsConfig {
    SessionsConfig {
        max_messages: 200,
        max_bytes: 1 << 20,
        ttl_ms: 2_000,
        max_per_user: 3,
        max_total: 1_000,
        max_total_bytes: 1 << 24,
    }
}

fn user(sub: &str) -> UserId {
    UserId(sub.into())
}

fn turn(prompt: &str, reply: &str) -> Turn {
    Turn {
        input: vec![ChatMessage::text(Role::User, prompt)],
        asked_at: 1,
        reply: Some(TurnReply {
            text: reply.into(),
            ..TurnReply::default()
        }),
        status: TurnStatus::Complete,
        ended_at: 2,
    }
}

/// One whole turn on `id` at `now`; returns its number.
fn exchange(store: &MemoryStore, owner: Option<&UserId>, id: &str, t: Turn, now: Instant) -> u64 {
    let begun = store.begin_at(owner, id, now).expect("begin");
    store.end_at(&begun.key, Some(t), now);
    begun.turn
}

fn contents(store: &MemoryStore, owner: Option<&UserId>, id: &str, now: Instant) -> Vec<String> {
    let d = store.get_at(owner, id, now).expect("get");
    d.messages.into_iter().map(|m| m.content).collect()
}

#[test]
fn history_comes_back_in_order_and_turns_count_up() {
    let store = MemoryStore::new(&limits());
    let now = Instant::now();
    assert_eq!(exchange(&store, None, "s", turn("q1", "a1"), now), 1);
    assert_eq!(exchange(&store, None, "s", turn("q2", "a2"), now), 2);
    let begun = store.begin_at(None, "s", now).unwrap();
    assert_eq!(begun.turn, 3);
    let texts: Vec<(Role, String)> = begun
        .history
        .iter()
        .map(|m| (m.role, m.content.text().into_owned()))
        .collect();
    let history: Vec<(Role, &str)> = texts.iter().map(|(r, t)| (*r, t.as_str())).collect();
    assert_eq!(
        history,
        [
            (Role::User, "q1"),
            (Role::Assistant, "a1"),
            (Role::User, "q2"),
            (Role::Assistant, "a2"),
        ]
    );
}

#[test]
fn the_oldest_turns_go_past_max_messages() {
    let store = MemoryStore::new(&SessionsConfig {
        max_messages: 5,
        ..limits()
    });
    let now = Instant::now();
    for i in 1..=4 {
        exchange(
            &store,
            None,
            "s",
            turn(&format!("q{i}"), &format!("a{i}")),
            now,
        );
    }
    // 8 messages made; whole turns dropped until at most 5 remain: 4.
    assert_eq!(contents(&store, None, "s", now), ["q3", "a3", "q4", "a4"]);
    let d = store.get_at(None, "s", now).unwrap();
    assert_eq!(d.turns, 4);
}

#[test]
fn the_oldest_turns_go_past_max_bytes_and_an_oversized_turn_is_not_kept() {
    let store = MemoryStore::new(&SessionsConfig {
        max_bytes: 10,
        ..limits()
    });
    let now = Instant::now();
    exchange(&store, None, "s", turn("aaa", "bbb"), now);
    exchange(&store, None, "s", turn("ccc", "ddd"), now);
    assert_eq!(contents(&store, None, "s", now), ["ccc", "ddd"]);
    assert_eq!(store.figures().bytes, 6);
    exchange(&store, None, "s", turn("eeeeee", "ffffff"), now);
    assert!(contents(&store, None, "s", now).is_empty());
    assert_eq!(store.figures().bytes, 0);
    assert_eq!(store.get_at(None, "s", now).unwrap().turns, 3);
}

#[test]
fn an_idle_session_expires_on_access_and_by_the_sweep() {
    let store = MemoryStore::new(&limits());
    let t0 = Instant::now();
    exchange(&store, None, "a", turn("q", "r"), t0);
    exchange(&store, None, "b", turn("q", "r"), t0);
    let almost = t0 + Duration::from_millis(1_999);
    assert!(
        store.get_at(None, "a", almost).is_ok(),
        "reading does not renew"
    );
    let later = t0 + Duration::from_millis(2_000);
    assert!(matches!(
        store.get_at(None, "a", later),
        Err(GatewayError::UnknownSession(_))
    ));
    assert_eq!(store.figures().expired, 1);
    assert_eq!(store.figures().held, 1);
    assert_eq!(store.sweep_at(later), 1);
    assert_eq!(store.figures().held, 0);
    assert_eq!(store.figures().bytes, 0);
    // The id is free again: a new session, turn 1.
    assert_eq!(exchange(&store, None, "a", turn("q", "r"), later), 1);
}

#[test]
fn one_live_stream_per_session_and_a_busy_one_never_expires() {
    let store = MemoryStore::new(&limits());
    let t0 = Instant::now();
    let begun = store.begin_at(None, "s", t0).unwrap();
    assert!(matches!(
        store.begin_at(None, "s", t0),
        Err(GatewayError::SessionBusy(_))
    ));
    assert!(matches!(
        store.delete_at(None, "s", t0),
        Err(GatewayError::SessionBusy(_))
    ));
    let late = t0 + Duration::from_secs(60);
    assert_eq!(store.sweep_at(late), 0);
    store.end_at(&begun.key, Some(turn("q", "r")), late);
    // A key that no longer holds the mark changes nothing.
    store.end_at(&begun.key, Some(turn("x", "y")), late);
    assert_eq!(contents(&store, None, "s", late), ["q", "r"]);
    assert!(store.delete_at(None, "s", late).is_ok());
    assert!(store.get_at(None, "s", late).is_err());
}

#[test]
fn a_refused_first_turn_leaves_nothing_and_an_abandoned_one_keeps_the_prompt() {
    let store = MemoryStore::new(&limits());
    let now = Instant::now();
    let begun = store.begin_at(None, "s", now).unwrap();
    store.end_at(&begun.key, None, now);
    assert_eq!(store.figures().held, 0);
    exchange(&store, None, "s", turn("q", "r"), now);
    let begun = store.begin_at(None, "s", now).unwrap();
    store.end_at(&begun.key, None, now);
    assert_eq!(contents(&store, None, "s", now), ["q", "r"], "kept");
    let begun = store.begin_at(None, "s", now).unwrap();
    let failed = Turn {
        reply: None,
        status: TurnStatus::Error,
        ..turn("boom", "")
    };
    store.end_at(&begun.key, Some(failed), now);
    let d = store.get_at(None, "s", now).unwrap();
    let last = d.messages.last().unwrap();
    assert_eq!((last.role, last.content.as_str()), (Role::User, "boom"));
    assert_eq!(last.status, Some(TurnStatus::Error));
}

#[test]
fn another_users_session_is_unknown_to_read_and_forbidden_to_write() {
    let store = MemoryStore::new(&limits());
    let (a, b) = (user("alice"), user("bob"));
    let now = Instant::now();
    exchange(&store, Some(&a), "s", turn("secret", "reply"), now);
    assert!(matches!(
        store.begin_at(Some(&b), "s", now),
        Err(GatewayError::Forbidden { .. })
    ));
    assert!(matches!(
        store.get_at(Some(&b), "s", now),
        Err(GatewayError::UnknownSession(_))
    ));
    assert!(matches!(
        store.delete_at(Some(&b), "s", now),
        Err(GatewayError::UnknownSession(_))
    ));
    assert!(store.list_at(Some(&b), now).is_empty());
    assert_eq!(store.list_at(Some(&a), now).len(), 1);
    assert_eq!(contents(&store, Some(&a), "s", now), ["secret", "reply"]);
}

#[test]
fn past_max_per_user_the_least_recently_used_goes() {
    let store = MemoryStore::new(&limits());
    let (a, b) = (user("alice"), user("bob"));
    let t = |ms| Instant::now() + Duration::from_millis(ms);
    exchange(&store, Some(&b), "b1", turn("q", "r"), t(0));
    for (i, id) in ["s1", "s2", "s3"].iter().enumerate() {
        exchange(&store, Some(&a), id, turn("q", "r"), t(i as u64));
    }
    exchange(&store, Some(&a), "s1", turn("q", "r"), t(10)); // s2 is now the oldest
    exchange(&store, Some(&a), "s4", turn("q", "r"), t(11));
    let ids: Vec<_> = store
        .list_at(Some(&a), t(12))
        .into_iter()
        .map(|s| s.id.to_string())
        .collect();
    assert_eq!(ids, ["s4", "s1", "s3"], "most recent first");
    assert_eq!(store.figures().evictions, 1);
    assert_eq!(store.list_at(Some(&b), t(12)).len(), 1, "bob keeps his");
}

#[test]
fn memory_stays_bounded_for_any_number_of_users_and_turns() {
    let cap = SessionsConfig {
        max_bytes: 2_000,
        max_per_user: 5,
        max_total: 300,
        max_total_bytes: 200_000,
        ..limits()
    };
    let store = MemoryStore::new(&cap);
    let now = Instant::now();
    let reply = "r".repeat(400);
    for u in 0..1_000 {
        let owner = user(&format!("u{u}"));
        for s in 0..7 {
            let id = format!("s{u}.{s}");
            for _ in 0..3 {
                exchange(&store, Some(&owner), &id, turn("question", &reply), now);
                let f = store.figures();
                assert!(f.held <= 300 && f.bytes <= 200_000, "{f:?}");
            }
        }
    }
    let f = store.figures();
    assert!(f.evictions >= 7_000 - 300, "{f:?}");
    // The held bytes are exactly what the sessions hold.
    let inner = store.lock();
    let sum: usize = inner.sessions.values().map(|s| s.bytes).sum();
    assert_eq!(sum as u64, f.bytes);
    assert_eq!(inner.by_use.len(), inner.sessions.len());
}
