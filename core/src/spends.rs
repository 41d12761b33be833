//! Spends of the iNode wallet (SPEC §5.3 point 5), as pure functions. Only the chain's own
//! blocks say what the wallet paid: every transaction with an input from the wallet is read
//! from them, and each is either one of our batches' transactions or **foreign** (a store
//! restored from a backup, a second installation with the same key, a stolen key). What the
//! payouts may do, what an adoption records and what the audit compares are decided here; the
//! store keeps the documents (`store::spends`).

use std::collections::BTreeMap;

use crate::chain::{BlockDetails, ChainTransaction};
use crate::money::coins_text;

/// The wallet, recognised in either address form (base58 or the 128-hex full form).
#[derive(Debug, Clone)]
pub struct Wallet {
    text: String,
    key: Option<[u8; 33]>,
}

impl Wallet {
    pub fn new(address: &str) -> Wallet {
        Wallet {
            text: address.to_owned(),
            key: crate::address::decode(address).ok(),
        }
    }

    pub fn address(&self) -> &str {
        &self.text
    }

    /// Whether `address` names the wallet's key.
    pub fn owns(&self, address: &str) -> bool {
        address == self.text
            || self
                .key
                .is_some_and(|key| crate::address::decode(address).ok() == Some(key))
    }
}

/// An output of the wallet a spend consumes, as the chain names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpentOutput {
    pub tx_hash: Option<String>,
    pub index: Option<u32>,
}

/// A transaction that spends the wallet, as read from the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spend {
    pub hash: String,
    /// The wallet's outputs it spends (inputs owned by other addresses are left out).
    pub inputs: Vec<SpentOutput>,
    /// Units it pays to each address other than the wallet, summed per address.
    pub outputs: BTreeMap<String, i64>,
    /// Units it pays back to the wallet.
    pub change: i64,
    /// Why its outputs cannot all be read (then `outputs` holds only those that could): such a
    /// spend is never adopted, only acknowledged once an operator has looked at it.
    pub unreadable: Option<String>,
}

/// The spend `tx` makes of `wallet`, if it spends it. An input whose owner the chain does not
/// name may be the wallet's: such a transaction counts as a spend whose outputs cannot be
/// trusted (unreadable), so that a view of the wallet's spends is never taken as complete when
/// it is not. A transaction without inputs (a coinbase) spends nothing.
pub fn spend_of(tx: &ChainTransaction, wallet: &Wallet) -> Option<Spend> {
    let mut unowned = Vec::new();
    let mut inputs = Vec::new();
    for (position, input) in tx.inputs.iter().enumerate() {
        match input.address.as_deref() {
            Some(owner) if wallet.owns(owner) => inputs.push(SpentOutput {
                tx_hash: input.tx_hash.clone(),
                index: input.index,
            }),
            Some(_) => {}
            None => unowned.push(position),
        }
    }
    if inputs.is_empty() && unowned.is_empty() {
        return None;
    }
    let mut problems = Vec::new();
    if !unowned.is_empty() {
        problems.push(format!(
            "the chain names no owner for input{} {}, which may be the wallet's",
            if unowned.len() == 1 { "" } else { "s" },
            unowned
                .iter()
                .map(|p| format!("#{p}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    problems.extend(tx.unreadable_outputs.iter().map(|o| {
        format!(
            "output #{} ({}) cannot be read: {}",
            o.index,
            o.address.as_deref().unwrap_or("no address"),
            o.error
        )
    }));
    let mut outputs: BTreeMap<String, i64> = BTreeMap::new();
    let mut change: i64 = 0;
    for output in &tx.outputs {
        let units = output.amount.units();
        let sum = if wallet.owns(&output.address) {
            &mut change
        } else {
            outputs.entry(output.address.clone()).or_insert(0)
        };
        match sum.checked_add(units) {
            Some(total) => *sum = total,
            None => problems.push(format!("the outputs to {} overflow", output.address)),
        }
    }
    Some(Spend {
        hash: tx.hash.clone(),
        inputs,
        outputs,
        change,
        unreadable: (!problems.is_empty()).then(|| problems.join("; ")),
    })
}

/// A spend found in a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpendInBlock {
    pub spend: Spend,
    pub block: i64,
    pub block_hash: String,
    pub time: Option<bson::DateTime>,
}

/// The wallet's spends in a run of consecutive blocks `from..=to`: what the books record of
/// that range replaces what they held for it (a reorganised block's spends go with it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockSpends {
    pub from: i64,
    pub to: i64,
    /// The hash of block `to`, as read.
    pub to_hash: String,
    pub found: Vec<SpendInBlock>,
}

/// The spends of `wallet` in `blocks` (one `get_blocks_details` answer, in id order), each
/// transaction once; `None` for an empty answer.
pub fn spends_in_blocks(blocks: &[BlockDetails], wallet: &Wallet) -> Option<BlockSpends> {
    let (first, last) = (blocks.first()?, blocks.last()?);
    let mut seen = std::collections::HashSet::new();
    let found = blocks
        .iter()
        .flat_map(|b| b.transactions.iter().map(move |tx| (b, tx)))
        .filter(|(_, tx)| seen.insert(tx.hash.clone()))
        .filter_map(|(b, tx)| {
            Some(SpendInBlock {
                spend: spend_of(tx, wallet)?,
                block: b.block.id as i64,
                block_hash: b.block.hash.clone(),
                time: b.block.time(),
            })
        })
        .collect();
    Some(BlockSpends {
        from: first.block.id as i64,
        to: last.block.id as i64,
        to_hash: last.block.hash.clone(),
        found,
    })
}

/// Where a foreign spend is, as far as the chain shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whereabouts {
    InBlock(i64),
    /// Listed by the node as pending.
    Pending,
    /// Seen pending, then neither pending nor in a block: it may still be mined (anyone holding
    /// it can push it again), so it stays until an operator acknowledges it.
    Dropped,
}

impl std::fmt::Display for Whereabouts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Whereabouts::InBlock(block) => write!(f, "in block {block}"),
            Whereabouts::Pending => f.write_str("pending"),
            Whereabouts::Dropped => f.write_str("seen pending, since dropped"),
        }
    }
}

/// An unresolved foreign spend, as a reason names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignSpend {
    pub hash: String,
    pub whereabouts: Whereabouts,
    pub outputs: BTreeMap<String, i64>,
    /// Why some of its outputs cannot be read (see [`Spend::unreadable`]).
    pub unreadable: Option<String>,
}

impl ForeignSpend {
    /// Units it paid away from the wallet (change not counted).
    pub fn units(&self) -> i64 {
        self.outputs
            .values()
            .fold(0_i64, |sum, units| sum.saturating_add(*units))
    }

    fn describe(&self) -> String {
        let mut paid: Vec<String> = self
            .outputs
            .iter()
            .map(|(address, units)| format!("{} to {address}", coins_text(*units)))
            .collect();
        if paid.is_empty() {
            paid.push("nothing to other addresses".into());
        }
        format!(
            "{} ({}, paying {}{})",
            self.hash,
            self.whereabouts,
            paid.join(", "),
            if self.unreadable.is_some() {
                "; some outputs cannot be read"
            } else {
                ""
            }
        )
    }
}

/// How far the books have read the wallet's spends, as a payouts run checks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpendsView {
    /// Every block up to the chain's tip has been read.
    Complete,
    /// The chain has blocks past what one read reaches: a store restored from a backup, or a
    /// rewards job that has not run for a while. `credited_to` is the last block the rewards
    /// job credited, `read_to` the last block read.
    Behind { credited_to: i64, read_to: i64 },
    /// The blocks could not be read as a whole (a reorganisation, a skipped block): the text
    /// says what.
    Unreadable(String),
}

/// Why a payouts run must push nothing, if it must (SPEC §5.3 point 5): a foreign spend not yet
/// resolved, or a view of the wallet's spends that does not reach the chain's tip. The reason
/// names the transactions, their amounts, and what to do.
pub fn payouts_hold(view: &SpendsView, unresolved: &[ForeignSpend]) -> Option<String> {
    let mut reasons = Vec::new();
    if !unresolved.is_empty() {
        let units = unresolved
            .iter()
            .fold(0_i64, |sum, s| sum.saturating_add(s.units()));
        reasons.push(format!(
            "{} foreign spend{} of the wallet (paying {} in all) {} unresolved: {}. A spend minerpool did not make can be a store restored from a backup, a second installation with the same key, or a stolen key: check each, then adopt it (`minerpool-job spends adopt HASH --reason TEXT`: its outputs to known payees are recorded as paid) or acknowledge it (`minerpool-job spends acknowledge HASH --reason TEXT`: balances unchanged)",
            unresolved.len(),
            if unresolved.len() == 1 { "" } else { "s" },
            coins_text(units),
            if unresolved.len() == 1 { "is" } else { "are" },
            unresolved
                .iter()
                .map(ForeignSpend::describe)
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    match view {
        SpendsView::Complete => {}
        SpendsView::Behind {
            credited_to,
            read_to,
        } => reasons.push(format!(
            "the books are behind the chain: the rewards job has credited blocks up to {credited_to}, and the chain has blocks past {read_to}, whose spends of the wallet are not read yet (a store restored from a backup is behind the chain): payouts wait until the rewards job has read every block to the chain's tip (rewards.blocksPerRun blocks a pass), so that no payment the wallet already made is made again"
        )),
        SpendsView::Unreadable(why) => reasons.push(format!(
            "the wallet's spends cannot be read up to the chain's tip: {why}"
        )),
    }
    (!reasons.is_empty()).then(|| format!("payouts held: {}", reasons.join("; and ")))
}

/// Why an adoption is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdoptionError {
    #[error(
        "{hash} is {whereabouts}: only a spend in a block at least rewards.confirmations deep (at or below block {settled}, the last block the rewards job credited) can be adopted, since adopting marks its outputs paid; wait, or acknowledge it"
    )]
    NotSettled {
        hash: String,
        whereabouts: Whereabouts,
        settled: i64,
    },
    #[error(
        "{hash}'s outputs cannot all be read ({why}): it cannot be adopted; acknowledge it once you have checked it"
    )]
    Unreadable { hash: String, why: String },
    #[error("{hash} pays no address with a balance: there is nothing to adopt; acknowledge it")]
    NoPayee { hash: String },
    #[error(
        "{hash} paid {address} {paid}, more than its pending {pending}: adopting it would leave a negative balance. If the books are behind the chain, let the rewards job credit the blocks scanned since the restore first; otherwise acknowledge the spend"
    )]
    MoreThanPending {
        hash: String,
        address: String,
        paid: String,
        pending: String,
    },
}

/// What adopting a spend records: its outputs to known payees as paid, each exactly what the
/// chain paid (never more), and the outputs to addresses without a balance left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adoption {
    pub paid: Vec<(String, i64)>,
    /// Outputs to addresses with no balance: not payments the books know of.
    pub not_adopted: Vec<(String, i64)>,
}

/// Decides an adoption: `pending` holds the pending units of every output address that has a
/// balance; `settled` is the last block the rewards job credited (below it, a reorganisation
/// stops the rewards job, so a spend there stays where it is).
pub fn adoption(
    spend: &ForeignSpend,
    pending: &BTreeMap<String, i64>,
    settled: i64,
) -> Result<Adoption, AdoptionError> {
    let settled_block =
        matches!(spend.whereabouts, Whereabouts::InBlock(block) if block <= settled);
    if !settled_block {
        return Err(AdoptionError::NotSettled {
            hash: spend.hash.clone(),
            whereabouts: spend.whereabouts,
            settled,
        });
    }
    if let Some(why) = &spend.unreadable {
        return Err(AdoptionError::Unreadable {
            hash: spend.hash.clone(),
            why: why.clone(),
        });
    }
    let mut adoption = Adoption {
        paid: Vec::new(),
        not_adopted: Vec::new(),
    };
    for (address, units) in &spend.outputs {
        match pending.get(address) {
            Some(owed) if owed < units => {
                return Err(AdoptionError::MoreThanPending {
                    hash: spend.hash.clone(),
                    address: address.clone(),
                    paid: coins_text(*units),
                    pending: coins_text(*owed),
                });
            }
            Some(_) => adoption.paid.push((address.clone(), *units)),
            None => adoption.not_adopted.push((address.clone(), *units)),
        }
    }
    if adoption.paid.is_empty() {
        return Err(AdoptionError::NoPayee {
            hash: spend.hash.clone(),
        });
    }
    Ok(adoption)
}

/// One address whose `paid` differs from what the chain's blocks show the wallet paid it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaidDifference {
    pub address: String,
    pub chain: i64,
    pub ledger: i64,
}

impl std::fmt::Display for PaidDifference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: the chain's blocks show the wallet paid {}, the ledger's paid is {}",
            self.address,
            coins_text(self.chain),
            coins_text(self.ledger)
        )
    }
}

/// Every address whose ledger `paid` is not what the chain paid it, in address order.
pub fn paid_differences(
    chain: &BTreeMap<String, i64>,
    ledger: &BTreeMap<String, i64>,
) -> Vec<PaidDifference> {
    let mut addresses: Vec<&String> = chain.keys().chain(ledger.keys()).collect();
    addresses.sort();
    addresses.dedup();
    addresses
        .into_iter()
        .filter_map(|address| {
            let on_chain = chain.get(address).copied().unwrap_or(0);
            let in_ledger = ledger.get(address).copied().unwrap_or(0);
            (on_chain != in_ledger).then(|| PaidDifference {
                address: address.clone(),
                chain: on_chain,
                ledger: in_ledger,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::{TransactionInput, TransactionOutput, UnreadableOutput};
    use crate::money::Amount;

    const WALLET: &str = "wallet";

    fn input(owner: Option<&str>, index: u32) -> TransactionInput {
        TransactionInput {
            address: owner.map(str::to_owned),
            tx_hash: Some(format!("{index:064x}")),
            index: Some(index),
        }
    }

    fn output(address: &str, units: i64) -> TransactionOutput {
        TransactionOutput {
            address: address.into(),
            amount: Amount::from_units(units).unwrap(),
            output_type: Some("REGULAR".into()),
        }
    }

    fn tx(inputs: Vec<TransactionInput>, outputs: Vec<TransactionOutput>) -> ChainTransaction {
        ChainTransaction {
            hash: "h".into(),
            is_coinbase: false,
            transaction_type: Some("REGULAR".into()),
            inputs,
            outputs,
            unreadable_outputs: vec![],
        }
    }

    #[test]
    fn a_spend_of_the_wallet_is_read_with_its_outputs_and_change() {
        let wallet = Wallet::new(WALLET);
        let t = tx(
            vec![input(Some(WALLET), 0), input(Some("other"), 1)],
            vec![
                output("a", 5),
                output("b", 7),
                output("a", 1),
                output(WALLET, 3),
            ],
        );
        let spend = spend_of(&t, &wallet).unwrap();
        assert_eq!(spend.inputs.len(), 1, "only the wallet's inputs");
        assert_eq!(
            spend.outputs,
            BTreeMap::from([("a".into(), 6), ("b".into(), 7)])
        );
        assert_eq!(spend.change, 3);
        assert_eq!(spend.unreadable, None);
    }

    #[test]
    fn transactions_that_do_not_spend_the_wallet_are_not_spends() {
        let wallet = Wallet::new(WALLET);
        let income = tx(vec![input(Some("payer"), 0)], vec![output(WALLET, 5)]);
        assert_eq!(spend_of(&income, &wallet), None);
        let coinbase = tx(vec![], vec![output(WALLET, 5)]);
        assert_eq!(spend_of(&coinbase, &wallet), None, "no inputs: no spend");
    }

    #[test]
    fn an_input_without_an_owner_or_an_unreadable_output_makes_the_spend_unreadable() {
        let wallet = Wallet::new(WALLET);
        let t = tx(vec![input(None, 0)], vec![output("a", 5)]);
        let spend = spend_of(&t, &wallet).unwrap();
        assert!(
            spend.unreadable.as_deref().unwrap().contains("input #0"),
            "{spend:?}"
        );
        let mut t = tx(vec![input(Some(WALLET), 0)], vec![output("a", 5)]);
        t.unreadable_outputs.push(UnreadableOutput {
            index: 1,
            address: Some("thief".into()),
            error: "invalid amount".into(),
        });
        let spend = spend_of(&t, &wallet).unwrap();
        let why = spend.unreadable.unwrap();
        assert!(
            why.contains("output #1 (thief)") && why.contains("invalid amount"),
            "{why}"
        );
        assert_eq!(spend.outputs, BTreeMap::from([("a".into(), 5)]));
    }

    #[test]
    fn the_wallet_is_recognised_in_its_full_hex_form() {
        let key = crate::upow::parse_private_key("7").unwrap();
        let compressed = crate::address::address_of(key.verifying_key());
        let point = key.verifying_key().to_encoded_point(false);
        let le = |b: &[u8]| b.iter().rev().copied().collect::<Vec<u8>>();
        let full = hex::encode([le(point.x().unwrap()), le(point.y().unwrap())].concat());
        let wallet = Wallet::new(&compressed);
        assert!(wallet.owns(&compressed) && wallet.owns(&full), "{full}");
        assert!(!wallet.owns(&crate::address::address_of(
            crate::upow::parse_private_key("8").unwrap().verifying_key()
        )));
    }

    fn foreign(whereabouts: Whereabouts, outputs: &[(&str, i64)]) -> ForeignSpend {
        ForeignSpend {
            hash: "f00d".into(),
            whereabouts,
            outputs: outputs.iter().map(|(a, u)| ((*a).into(), *u)).collect(),
            unreadable: None,
        }
    }

    #[test]
    fn payouts_are_held_by_a_foreign_spend_or_a_view_behind_the_chain() {
        assert_eq!(payouts_hold(&SpendsView::Complete, &[]), None);
        let reason = payouts_hold(
            &SpendsView::Complete,
            &[foreign(Whereabouts::InBlock(12), &[("thief", 150_000_000)])],
        )
        .unwrap();
        for part in [
            "1 foreign spend",
            "f00d (in block 12, paying 1.50000000 to thief)",
            "adopt",
            "acknowledge",
        ] {
            assert!(reason.contains(part), "{part}: {reason}");
        }
        let reason = payouts_hold(
            &SpendsView::Behind {
                credited_to: 100,
                read_to: 117,
            },
            &[],
        )
        .unwrap();
        assert!(
            reason.contains("blocks up to 100") && reason.contains("blocks past 117"),
            "{reason}"
        );
        let reason = payouts_hold(&SpendsView::Unreadable("skips block 5".into()), &[]).unwrap();
        assert!(reason.contains("skips block 5"), "{reason}");
    }

    #[test]
    fn adoption_pays_known_payees_what_the_chain_paid_and_nothing_unsettled() {
        let pending = BTreeMap::from([("a".to_owned(), 10), ("b".to_owned(), 7)]);
        let spend = foreign(Whereabouts::InBlock(50), &[("a", 10), ("b", 4), ("x", 3)]);
        let adopted = adoption(&spend, &pending, 60).unwrap();
        assert_eq!(adopted.paid, vec![("a".into(), 10), ("b".into(), 4)]);
        assert_eq!(adopted.not_adopted, vec![("x".into(), 3)]);

        for whereabouts in [
            Whereabouts::InBlock(61),
            Whereabouts::Pending,
            Whereabouts::Dropped,
        ] {
            let error = adoption(&foreign(whereabouts, &[("a", 1)]), &pending, 60).unwrap_err();
            assert!(matches!(error, AdoptionError::NotSettled { .. }), "{error}");
        }
        let error = adoption(
            &foreign(Whereabouts::InBlock(50), &[("a", 11)]),
            &pending,
            60,
        )
        .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("paid a 0.00000011, more than its pending 0.00000010"),
            "{error}"
        );
        let error = adoption(
            &foreign(Whereabouts::InBlock(50), &[("x", 1)]),
            &pending,
            60,
        )
        .unwrap_err();
        assert!(matches!(error, AdoptionError::NoPayee { .. }));
        let mut unreadable = foreign(Whereabouts::InBlock(50), &[("a", 1)]);
        unreadable.unreadable = Some("output #1 cannot be read".into());
        assert!(matches!(
            adoption(&unreadable, &pending, 60),
            Err(AdoptionError::Unreadable { .. })
        ));
    }

    #[test]
    fn paid_differences_name_every_address_that_differs() {
        let chain = BTreeMap::from([("a".to_owned(), 5), ("b".to_owned(), 3)]);
        let ledger = BTreeMap::from([("b".to_owned(), 3), ("c".to_owned(), 2)]);
        let found = paid_differences(&chain, &ledger);
        assert_eq!(
            found,
            vec![
                PaidDifference {
                    address: "a".into(),
                    chain: 5,
                    ledger: 0
                },
                PaidDifference {
                    address: "c".into(),
                    chain: 0,
                    ledger: 2
                },
            ]
        );
        assert_eq!(
            found[0].to_string(),
            "a: the chain's blocks show the wallet paid 0.00000005, the ledger's paid is 0.00000000"
        );
    }
}
