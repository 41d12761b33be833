//! What a group of TASKs and PINGs does, decided in memory before anything is written
//! ([`plan_group`]): exactly the effect of its messages processed one at a time, in arrival
//! order. A (`validator_wallet`, `val_id`) already accepted, or repeated inside the group, scores
//! once; a nonce counts once; a pool's increments sum and cap at 100 as sequential TASKs would
//! (increments are positive, so capping the sum equals capping each step). Pure, so the tests
//! below hold it to the one-at-a-time rule for any group.

use std::collections::{BTreeMap, HashMap, HashSet};

use bson::{Bson, DateTime};

use crate::store::intake::{TaskRecorded, receipt_id};

/// How a message proves who sent it (SPEC §4.5), and so what its write must check first.
#[derive(Debug, Clone, PartialEq)]
pub enum Proof {
    /// `node.protocol: legacy`: nothing to check.
    Legacy,
    /// Unsigned, accepted only from a validator that has never sent a valid signed message.
    Unsigned,
    /// A valid signature. Its nonce is remembered with the digest of the signed bytes until
    /// `expires_at`, inserted with the message's effect: a nonce accepted once is a resend (same
    /// digest, nothing done) or refused (other bytes), on every node.
    Signed {
        nonce: String,
        digest: String,
        expires_at: DateTime,
    },
}

/// One message to write.
#[derive(Debug, Clone, PartialEq)]
pub struct Activity {
    pub validator: String,
    /// The validator's `_id`, when known (from the cached registry): its document is then read
    /// by `_id`, the cheapest index.
    pub validator_id: Option<Bson>,
    pub proof: Proof,
    pub at: DateTime,
    pub effect: Effect,
}

impl Activity {
    /// An unproved TASK (`node.protocol: legacy`).
    pub fn task(validator: &str, pool: &str, val_id: &str, increment: i64, at: DateTime) -> Self {
        Activity {
            validator: validator.to_owned(),
            validator_id: None,
            proof: Proof::Legacy,
            at,
            effect: Effect::Task {
                pool: pool.to_owned(),
                val_id: val_id.to_owned(),
                increment,
            },
        }
    }

    /// An unproved PING (`node.protocol: legacy`).
    pub fn ping(validator: &str, ip: &str, port: u16, at: DateTime) -> Self {
        Activity {
            validator: validator.to_owned(),
            validator_id: None,
            proof: Proof::Legacy,
            at,
            effect: Effect::Ping {
                ip: ip.to_owned(),
                port,
            },
        }
    }
}

/// What a message does once its proof holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// An accepted TASK: its pool gains `increment` unless (`validator`, `val_id`) was accepted
    /// before.
    Task {
        pool: String,
        val_id: String,
        increment: i64,
    },
    /// Where a validator listens, and when it said so.
    Ping { ip: String, port: u16 },
}

/// What a message did once its group committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    Task(TaskRecorded),
    Ping,
    /// A signed message whose nonce was accepted before with the same signed bytes: a resend,
    /// answered as the first time, with no effect.
    Repeated,
    /// A signed message whose nonce was accepted before with other bytes: nothing done.
    NonceUsed,
    /// An unsigned message from a validator that signs: nothing done.
    SignatureRequired,
}

/// A nonce as [`Store::nonce_status`] finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nonce {
    Fresh,
    /// Accepted before with the same signed bytes.
    Resend,
    /// Accepted before with other bytes.
    Used,
}

/// What the group's transaction read before planning.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stored {
    /// Receipt ids ([`receipt_id`]) already stored.
    pub receipts: HashSet<String>,
    /// Nonce ids ([`nonce_id`]) already stored, with the digest each was accepted with (`None`:
    /// taken by a commit this node saw only as a duplicate key).
    pub nonces: HashMap<String, Option<String>>,
    /// Validators whose document records that they sign.
    pub signing: HashSet<String>,
}

/// The writes of one group, derived from its messages alone (and what is already stored).
#[derive(Debug, Clone, PartialEq)]
pub struct GroupPlan {
    /// (validator, val_id) of every TASK accepted now, in arrival order.
    pub receipts: Vec<(String, String)>,
    /// (nonce id, digest, expiry) of every signed message accepted now, in arrival order.
    pub nonces: Vec<(String, String, DateTime)>,
    /// Validators whose first valid signed message is in this group, each once.
    pub newly_signing: Vec<String>,
    /// Validators with an accepted TASK, each once.
    pub active_validators: Vec<String>,
    /// The `_id`s known for them.
    pub validator_ids: HashMap<String, Bson>,
    /// Each pool's summed increment over the accepted TASKs.
    pub pool_increments: BTreeMap<String, i64>,
    /// Every accepted PING, in arrival order (a later one for the same validator wins, as it
    /// would).
    pub pings: Vec<(String, String, u16, DateTime)>,
    /// Each message's outcome, by position.
    pub outcomes: Vec<Recorded>,
    /// The time written as `last_active_time`: the latest of the group's TASKs.
    pub at: DateTime,
    /// The time written as `signed_since`: the latest of the group's signed messages.
    pub signed_at: DateTime,
}

impl GroupPlan {
    /// The receipt ids the plan would insert, in order.
    pub(crate) fn receipt_ids(&self) -> Vec<String> {
        self.receipts
            .iter()
            .map(|(validator, val_id)| receipt_id(validator, val_id))
            .collect()
    }
}

/// The `_id` of a remembered nonce: nonces are unique per validator.
pub fn nonce_id(validator: &str, nonce: &str) -> String {
    format!("{validator}/{nonce}")
}

/// The group's effect, as if its messages were processed one after another against `stored`.
/// For each message: its proof first (a reused nonce, or an unsigned message from a validator
/// that signs, does nothing), then its effect.
pub fn plan_group(messages: &[Activity], stored: &Stored) -> GroupPlan {
    let mut seen = HashSet::new();
    let mut nonces: HashMap<String, Option<String>> = stored.nonces.clone();
    let mut signing: HashSet<&str> = stored.signing.iter().map(String::as_str).collect();
    let mut validators_seen = HashSet::new();
    let mut plan = GroupPlan {
        receipts: Vec::new(),
        nonces: Vec::new(),
        newly_signing: Vec::new(),
        active_validators: Vec::new(),
        validator_ids: HashMap::new(),
        pool_increments: BTreeMap::new(),
        pings: Vec::new(),
        outcomes: Vec::with_capacity(messages.len()),
        at: DateTime::from_millis(0),
        signed_at: DateTime::from_millis(0),
    };
    for message in messages {
        let validator = message.validator.as_str();
        let refused = match &message.proof {
            Proof::Legacy => None,
            Proof::Unsigned => signing
                .contains(validator)
                .then_some(Recorded::SignatureRequired),
            Proof::Signed {
                nonce,
                digest,
                expires_at,
            } => {
                let id = nonce_id(validator, nonce);
                match nonces.get(&id) {
                    Some(Some(first)) if first == digest => Some(Recorded::Repeated),
                    Some(_) => Some(Recorded::NonceUsed),
                    None => {
                        nonces.insert(id.clone(), Some(digest.clone()));
                        plan.nonces.push((id, digest.clone(), *expires_at));
                        if signing.insert(validator) {
                            plan.newly_signing.push(validator.to_owned());
                        }
                        plan.signed_at = plan.signed_at.max(message.at);
                        None
                    }
                }
            }
        };
        if let Some(refused) = refused {
            plan.outcomes.push(refused);
            continue;
        }
        let outcome = match &message.effect {
            Effect::Task {
                pool,
                val_id,
                increment,
            } => {
                if let Some(validator_id) = &message.validator_id {
                    plan.validator_ids
                        .insert(validator.to_owned(), validator_id.clone());
                }
                let id = receipt_id(validator, val_id);
                if stored.receipts.contains(&id) || !seen.insert(id) {
                    Recorded::Task(TaskRecorded::Replayed)
                } else {
                    plan.receipts.push((validator.to_owned(), val_id.clone()));
                    if validators_seen.insert(validator) {
                        plan.active_validators.push(validator.to_owned());
                    }
                    *plan.pool_increments.entry(pool.clone()).or_insert(0) += increment;
                    plan.at = plan.at.max(message.at);
                    Recorded::Task(TaskRecorded::Accepted)
                }
            }
            Effect::Ping { ip, port } => {
                plan.pings
                    .push((validator.to_owned(), ip.clone(), *port, message.at));
                Recorded::Ping
            }
        };
        plan.outcomes.push(outcome);
    }
    plan
}

/// Where a test crashes the node with a group's writes sent but not committed.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::scoring::pool_score_after_task;

    fn task(validator: &str, pool: &str, val_id: &str, increment: i64) -> Activity {
        Activity::task(validator, pool, val_id, increment, DateTime::from_millis(1))
    }

    fn signed(mut activity: Activity, nonce: &str, digest: &str) -> Activity {
        activity.proof = Proof::Signed {
            nonce: nonce.into(),
            digest: digest.into(),
            expires_at: DateTime::from_millis(2),
        };
        activity
    }

    fn unsigned(mut activity: Activity) -> Activity {
        activity.proof = Proof::Unsigned;
        activity
    }

    use Recorded::Task as T;
    use TaskRecorded::*;

    #[test]
    fn repeats_inside_the_group_and_before_it_score_once() {
        let stored = Stored {
            receipts: [receipt_id("v2", "old")].into(),
            ..Stored::default()
        };
        let plan = plan_group(
            &[
                task("v1", "p", "a", 3),
                task("v1", "p", "a", 3),
                task("v2", "p", "old", 5),
                task("v2", "q", "b", 5),
            ],
            &stored,
        );
        assert_eq!(
            plan.outcomes,
            vec![T(Accepted), T(Replayed), T(Replayed), T(Accepted)]
        );
        assert_eq!(
            plan.pool_increments,
            BTreeMap::from([("p".into(), 3), ("q".into(), 5)])
        );
        assert_eq!(plan.active_validators, vec!["v1", "v2"]);
        assert_eq!(plan.receipts.len(), 2);
    }

    #[test]
    fn a_nonce_counts_once_and_a_resend_of_its_bytes_is_answered_again() {
        let stored = Stored {
            nonces: [(nonce_id("v1", "n0"), Some("d0".into()))].into(),
            ..Stored::default()
        };
        let plan = plan_group(
            &[
                signed(task("v1", "p", "a", 3), "n0", "d0"),
                signed(task("v1", "p", "b", 3), "n0", "other"),
                signed(task("v1", "p", "c", 3), "n1", "d1"),
                signed(task("v1", "p", "c", 3), "n1", "d1"),
                signed(task("v1", "p", "d", 3), "n1", "d2"),
                // The same nonce from another validator is another nonce.
                signed(task("v2", "p", "e", 3), "n1", "d3"),
            ],
            &stored,
        );
        assert_eq!(
            plan.outcomes,
            vec![
                Recorded::Repeated,
                Recorded::NonceUsed,
                T(Accepted),
                Recorded::Repeated,
                Recorded::NonceUsed,
                T(Accepted),
            ]
        );
        assert_eq!(plan.pool_increments, BTreeMap::from([("p".into(), 6)]));
        assert_eq!(
            plan.nonces.iter().map(|n| n.0.as_str()).collect::<Vec<_>>(),
            vec![nonce_id("v1", "n1"), nonce_id("v2", "n1")]
        );
        assert_eq!(plan.newly_signing, vec!["v1", "v2"]);
    }

    #[test]
    fn after_a_signed_message_unsigned_ones_are_refused() {
        let stored = Stored {
            signing: ["v2".to_owned()].into(),
            ..Stored::default()
        };
        let plan = plan_group(
            &[
                unsigned(task("v1", "p", "a", 3)),
                signed(task("v1", "p", "b", 3), "n", "d"),
                unsigned(task("v1", "p", "c", 3)),
                unsigned(task("v2", "p", "d", 3)),
                // Legacy mode checks nothing.
                task("v2", "p", "e", 3),
            ],
            &stored,
        );
        assert_eq!(
            plan.outcomes,
            vec![
                T(Accepted),
                T(Accepted),
                Recorded::SignatureRequired,
                Recorded::SignatureRequired,
                T(Accepted),
            ]
        );
        assert_eq!(plan.newly_signing, vec!["v1"]);
        assert_eq!(plan.pool_increments, BTreeMap::from([("p".into(), 9)]));
    }

    proptest::proptest! {
        /// Capping the summed increments gives the score of the same TASKs applied one by one.
        #[test]
        fn a_group_scores_as_its_tasks_one_at_a_time(
            start in 0_i64..=100,
            tasks in proptest::collection::vec((0_u8..4, 0_u8..6, 1_i64..=20), 0..60),
        ) {
            let messages: Vec<Activity> = tasks
                .iter()
                .map(|(v, id, inc)| task(&format!("v{v}"), "p", &id.to_string(), *inc))
                .collect();
            let mut sequential = start;
            let mut accepted = HashSet::new();
            for (v, id, inc) in &tasks {
                if accepted.insert((*v, *id)) {
                    sequential = pool_score_after_task(sequential, *inc);
                }
            }
            let plan = plan_group(&messages, &Stored::default());
            let grouped = plan
                .pool_increments
                .get("p")
                .map_or(start, |sum| pool_score_after_task(start, *sum));
            proptest::prop_assert_eq!(grouped, sequential);
            proptest::prop_assert_eq!(plan.receipts.len(), accepted.len());
        }

        /// A group of signed and unsigned messages has the effect of the same messages planned
        /// one at a time, each against what the ones before it stored.
        #[test]
        fn proofs_in_a_group_decide_as_one_at_a_time(
            messages in proptest::collection::vec(
                (0_u8..3, 0_u8..4, proptest::option::of((0_u8..3, 0_u8..2))),
                0..40,
            ),
        ) {
            let messages: Vec<Activity> = messages
                .iter()
                .map(|(v, id, proof)| {
                    let t = task(&format!("v{v}"), "p", &id.to_string(), 1);
                    match proof {
                        None => unsigned(t),
                        Some((n, d)) => signed(t, &format!("n{n}"), &format!("d{d}")),
                    }
                })
                .collect();
            let grouped = plan_group(&messages, &Stored::default());
            let mut stored = Stored::default();
            let mut outcomes = Vec::new();
            for message in &messages {
                let alone = plan_group(std::slice::from_ref(message), &stored);
                outcomes.push(alone.outcomes[0]);
                stored.receipts.extend(alone.receipt_ids());
                for (id, digest, _) in alone.nonces {
                    stored.nonces.insert(id, Some(digest));
                }
                stored.signing.extend(alone.newly_signing);
            }
            proptest::prop_assert_eq!(grouped.outcomes, outcomes);
            proptest::prop_assert_eq!(grouped.receipts.len(), stored.receipts.len());
        }
    }
}
