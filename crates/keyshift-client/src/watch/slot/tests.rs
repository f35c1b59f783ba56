//! The ordering rules: a late, replayed or out-of-order event never moves a
//! consumer backwards; a rollback (a newer event) does.

use std::collections::BTreeMap;

use keyshift_core::api::WatchEventKind;
use keyshift_core::{SecretValue, Timestamp};

use super::*;

fn name() -> SecretName {
    "prod/api".parse().unwrap()
}

fn snap(version: u64) -> Snapshot {
    Snapshot {
        name: name(),
        version: VersionNumber(version),
        value: SecretValue::new(format!("value-{version}")).unwrap(),
        seq: 0,
    }
}

fn event(seq: u64, current: u64) -> WatchEvent {
    let mut labels = BTreeMap::new();
    labels.insert(Label::Current, VersionNumber(current));
    WatchEvent {
        id: i64::try_from(seq).unwrap() + 100,
        secret: name(),
        seq,
        kind: WatchEventKind::LabelsMoved,
        version: Some(VersionNumber(current)),
        labels,
        at: Timestamp::from_millis(0),
    }
}

/// A slot that has caught up with the stream (not `ahead`) at `seq`.
fn synced_slot(version: u64, seq: u64) -> Slot {
    let slot = Slot::new(snap(version), Duration::from_secs(30), None);
    let o = slot.apply(
        &Origin::Event {
            seq,
            expected: VersionNumber(version),
        },
        snap(version),
    );
    assert_eq!(o, Outcome::Unchanged);
    slot
}

/// Feeds `ev` as the supervisor does, with the server answering
/// `server_current` to a read of the `current` label.
fn feed(slot: &Slot, ev: &WatchEvent, server_current: u64) -> Outcome {
    match slot.on_event(ev) {
        Decision::Ignore => Outcome::Stale,
        Decision::Record => Outcome::Unchanged,
        Decision::Fetch(sel) => {
            let fetched = match sel {
                Selector::Version(v) => v.0,
                Selector::Label(_) => server_current,
            };
            let expected = ev.labels[&Label::Current];
            slot.apply(
                &Origin::Event {
                    seq: ev.seq,
                    expected,
                },
                snap(fetched),
            )
        }
    }
}

#[test]
fn a_lower_seq_event_is_ignored_and_never_moves_the_consumer_back() {
    let slot = synced_slot(1, 3);
    let mut changes = slot.changes();
    assert_eq!(feed(&slot, &event(7, 3), 3), Outcome::Applied);
    assert_eq!(slot.current().version, VersionNumber(3));
    assert_eq!(slot.current().seq, 7);
    assert!(changes.has_changed().unwrap());
    changes.mark_unchanged();

    // A late event (seq 6, current 2), then a replay of seq 7.
    assert_eq!(slot.on_event(&event(6, 2)), Decision::Ignore);
    assert_eq!(feed(&slot, &event(6, 2), 3), Outcome::Stale);
    assert_eq!(feed(&slot, &event(7, 3), 3), Outcome::Stale);
    assert_eq!(slot.current().version, VersionNumber(3));
    assert!(!changes.has_changed().unwrap());
}

#[test]
fn a_value_fetched_for_an_older_event_is_dropped_when_a_newer_one_was_applied() {
    let slot = synced_slot(1, 3);
    // Event 5 decides to fetch v2; before its fetch lands, event 6 (a
    // rollback to v1) is recorded.
    assert_eq!(
        slot.on_event(&event(5, 2)),
        Decision::Fetch(Selector::Version(VersionNumber(2)))
    );
    assert_eq!(slot.on_event(&event(6, 1)), Decision::Record);
    let late = slot.apply(
        &Origin::Event {
            seq: 5,
            expected: VersionNumber(2),
        },
        snap(2),
    );
    assert_eq!(late, Outcome::Stale);
    assert_eq!(slot.current().version, VersionNumber(1));
}

#[test]
fn a_rollback_is_a_newer_event_and_is_applied() {
    let slot = synced_slot(1, 3);
    assert_eq!(feed(&slot, &event(4, 2), 2), Outcome::Applied);
    assert_eq!(feed(&slot, &event(5, 1), 1), Outcome::Applied);
    assert_eq!(slot.current().version, VersionNumber(1));
    assert_eq!(slot.current().seq, 5);
}

#[test]
fn after_a_direct_read_replayed_events_are_checked_against_the_present() {
    // The first load (or a poll) read v3 while the stream was down; the
    // reconnect replays seq 4 (current v2) and seq 5 (current v3).
    let slot = Slot::new(snap(3), Duration::from_secs(30), None);
    assert_eq!(
        slot.on_event(&event(4, 2)),
        Decision::Fetch(Selector::Label(Label::Current))
    );
    let o = slot.apply(
        &Origin::Event {
            seq: 4,
            expected: VersionNumber(2),
        },
        snap(3),
    );
    assert_eq!(o, Outcome::Unchanged, "the present current is still v3");
    assert_eq!(feed(&slot, &event(5, 3), 3), Outcome::Unchanged);
    assert_eq!(slot.current().version, VersionNumber(3));
    // Once a label read matches an event, events are trusted again.
    assert_eq!(feed(&slot, &event(6, 4), 4), Outcome::Applied);
    assert_eq!(
        slot.on_event(&event(7, 5)),
        Decision::Fetch(Selector::Version(VersionNumber(5)))
    );
}

#[test]
fn a_read_that_raced_a_recorded_event_is_dropped() {
    let slot = synced_slot(1, 3);
    // A poll starts at seq 3 and reads v2 (a rotation that is about to be
    // rolled back); meanwhile event 5 says current is v1 again.
    let since_seq = 3;
    assert_eq!(slot.on_event(&event(5, 1)), Decision::Record);
    let o = slot.apply(&Origin::Read { since_seq }, snap(2));
    assert_eq!(o, Outcome::Stale);
    assert_eq!(slot.current().version, VersionNumber(1));
    // A read with no event in between is applied (covers missed events).
    let o = slot.apply(&Origin::Read { since_seq: 5 }, snap(2));
    assert_eq!(o, Outcome::Applied);
}

#[test]
fn events_without_a_current_label_only_move_the_sequence() {
    let slot = synced_slot(1, 3);
    let mut ev = event(4, 1);
    ev.labels.clear();
    assert_eq!(slot.on_event(&ev), Decision::Record);
    assert_eq!(slot.on_event(&event(4, 2)), Decision::Ignore);
}

#[test]
fn a_gate_refusal_keeps_the_held_value_and_reports_once_per_version() {
    let gate: Gate = Box::new(|s: &Snapshot| {
        if s.version.0 % 2 == 0 {
            Err("even versions are bad".to_owned())
        } else {
            Ok(())
        }
    });
    let slot = Slot::new(snap(1), Duration::from_secs(30), Some(gate));
    let o = slot.apply(&Origin::Read { since_seq: 0 }, snap(2));
    assert_eq!(o, Outcome::Rejected);
    assert_eq!(slot.current().version, VersionNumber(1));
    let err = slot.last_error().unwrap();
    assert!(err.contains("even versions are bad"), "{err}");
    assert_eq!(
        slot.apply(&Origin::Read { since_seq: 0 }, snap(2)),
        Outcome::Rejected
    );
    assert_eq!(
        slot.apply(&Origin::Read { since_seq: 0 }, snap(3)),
        Outcome::Applied
    );
    assert_eq!(slot.last_error(), None);
}

#[test]
fn the_ttl_stays_below_half_the_overlap_and_at_least_one_second() {
    let s = Duration::from_secs;
    assert_eq!(effective_ttl(s(60), Some(s(10))), s(5));
    assert_eq!(effective_ttl(s(3), Some(s(10))), s(3));
    assert_eq!(effective_ttl(s(30), Some(s(0))), MIN_TTL);
    assert_eq!(effective_ttl(s(30), None), s(30));
    assert_eq!(effective_ttl(Duration::from_millis(10), None), MIN_TTL);
}

fn canary_event(seq: u64, current: u64, canary: u64) -> WatchEvent {
    let mut ev = event(seq, current);
    ev.labels.insert(Label::Canary, VersionNumber(canary));
    ev
}

#[test]
fn a_canary_is_read_as_this_consumer_and_ends_with_promote_or_rollback() {
    // In the share: the server answers the canary's v2 to `current`.
    let inside = synced_slot(1, 3);
    assert_eq!(
        inside.on_event(&canary_event(4, 1, 2)),
        Decision::Fetch(Selector::Label(Label::Current))
    );
    assert_eq!(feed(&inside, &canary_event(5, 1, 2), 2), Outcome::Applied);
    assert_eq!(inside.current().version, VersionNumber(2));
    // Later events of the canary keep it; the rollback takes it back to v1.
    assert_eq!(
        inside.on_event(&canary_event(6, 1, 2)),
        Decision::Record,
        "holds the canary"
    );
    assert_eq!(feed(&inside, &event(7, 1), 1), Outcome::Applied);
    assert_eq!(inside.current().version, VersionNumber(1));

    // Outside the share: the server answers v1; it never sees v2 until
    // Promote makes v2 everyone's `current`.
    let outside = synced_slot(1, 3);
    assert_eq!(
        feed(&outside, &canary_event(4, 1, 2), 1),
        Outcome::Unchanged
    );
    assert_eq!(
        feed(&outside, &canary_event(5, 1, 2), 1),
        Outcome::Unchanged
    );
    assert_eq!(outside.current().version, VersionNumber(1));
    assert_eq!(feed(&outside, &event(6, 2), 2), Outcome::Applied);
    assert_eq!(outside.current().version, VersionNumber(2));
}
