//! `payouts` (SPEC §5.3): pays pending balances of at least `minimumPayout` on chain, exactly
//! once. A run first moves on what earlier runs left open (created, signed, submitted,
//! abandoning), then plans a new batch when none is in flight (a pending transaction's change is
//! not spendable yet).
//!
//! The rules that keep money from moving twice:
//! - a signed batch is never refunded on the strength of an answer: only when our own
//!   transaction spending its inputs is in a block (the abandon path);
//! - a batch counts as paid, and an abandon as proven, only when the block the chain names holds
//!   the transaction;
//! - every state change is fenced by the job lock, and the run stops before any network call
//!   once the lock is lost;
//! - coins any batch of ours has spent or holds are never selected again, whatever the chain
//!   lists.
//! - "Transaction just added" proves nothing (the node answers it from a list of recent hashes,
//!   held or not): `get_transaction` is asked, and a transaction the node does not hold is
//!   reported and left to the abandon timer, never signed again.
use std::sync::Mutex;

use minerpool_core::chain::{AddressInfo, OutputKey, PushOutcome, TransactionStatus};
use minerpool_core::config::Sender;
use minerpool_core::faults::{crash_point, pause_point};
use minerpool_core::money::coins_text;
use minerpool_core::payouts::{
    Coin, PaymentPlan, hold_aside_undecodable, plan_payment, select_coins, take_fee,
};
use minerpool_core::rewards::{plan_scan, scan_request};
use minerpool_core::spends::{
    Spend, SpendsView, SpentOutput, Wallet, payouts_hold, spend_of, spends_in_blocks,
};
use minerpool_core::store::payouts::{
    Abandonment, BatchKind, BatchState, NewBatch, PayoutBatch, SpentInput,
};
use minerpool_core::store::runs::Fence;
use minerpool_core::upow::{
    Input, MAX_INPUTS, Output, Transaction, address_of, decode_address, parse_private_key,
};
use p256::ecdsa::SigningKey;
use serde_json::{Value, json};

use crate::{Context, JobError, Pass};

/// What a payouts run was asked to do beyond its usual pass.
#[derive(Debug, Clone, Default)]
pub struct PayoutsRequest {
    /// Abandon this batch: spend its inputs back to the wallet, refund once that is in a block.
    pub abandon: Option<String>,
}

pub async fn run(
    context: &Context,
    fence: &Fence,
    request: &PayoutsRequest,
) -> Result<Pass, JobError> {
    if context.config.payouts.sender == Sender::Upow
        && let Some(held) = spends_hold(context).await?
    {
        return Ok(held);
    }
    let imported = context.store.import_temp_withdrawals(fence).await?;
    if imported.credited > 0 || !imported.held.is_empty() {
        tracing::info!(
            amount = %coins_text(imported.credited),
            held = imported.held.len(),
            "imported the original iNode's unpaid tempWithdrawals"
        );
    }
    let mut pass = pay_due(context, fence, request).await?;
    if let (false, Some(fields)) = (imported.held.is_empty(), pass.details.as_object_mut()) {
        // The entries the import could not credit (the audit keeps listing them).
        fields.insert("importHeld".into(), json!(imported.held));
    }
    Ok(pass)
}

async fn pay_due(
    context: &Context,
    fence: &Fence,
    request: &PayoutsRequest,
) -> Result<Pass, JobError> {
    let payouts = &context.config.payouts;
    let minimum = payouts.minimum_payout.units();
    let max = payouts.max_outputs_per_tx as usize;
    if payouts.sender == Sender::DryRun {
        if request.abandon.is_some() {
            return Err(JobError::Invalid(
                "--abandon needs payouts.sender upow: a dry run has nothing on chain".into(),
            ));
        }
        let batch = context.store.simulate_payout_batch(minimum, max).await?;
        return Ok(Pass::done(json!({
            "sender": "dry-run",
            "simulated": batch.map(|b| json!({ "batch": b.id, "recipients": b.recipients.len(), "total": coins_text(b.total) })),
        })));
    }
    let payer = Payer {
        context,
        fence,
        key: wallet_key(context)?,
        not_held: Mutex::default(),
        abandon_refused: Mutex::default(),
    };
    let mut pass = plan_and_pay(&payer, request).await?;
    for (key, found) in [
        ("notHeld", &payer.not_held),
        ("abandonRefused", &payer.abandon_refused),
    ] {
        let found = std::mem::take(&mut *found.lock().unwrap_or_else(|e| e.into_inner()));
        if !found.is_empty() {
            pass.details[key] = json!(found);
        }
    }
    Ok(pass)
}

/// Moves on the open batches, then creates and pays a new one when none is in flight.
async fn plan_and_pay(payer: &Payer<'_>, request: &PayoutsRequest) -> Result<Pass, JobError> {
    let (context, fence) = (payer.context, payer.fence);
    let payouts = &context.config.payouts;
    let minimum = payouts.minimum_payout.units();
    let max = payouts.max_outputs_per_tx as usize;
    let mut summary = json!({ "sender": "upow", "settled": [], "created": null });
    if let Some(id) = &request.abandon {
        let batch = context
            .store
            .request_abandon(fence, id, "abandoned by hand")
            .await?;
        summary["abandonRequested"] = json!({ "batch": id, "state": batch.state });
    }
    let mut settled = Vec::new();
    let mut stuck = Vec::new();
    for batch in context.store.open_payout_batches().await? {
        let id = batch.id.clone();
        if let Some(age) = payer.stuck_for(&batch) {
            stuck.push(json!({ "batch": id, "state": batch.state, "signedSecondsAgo": age }));
        }
        let now = payer.settle(batch).await?;
        settled.push(json!({ "batch": id, "now": now }));
    }
    summary["settled"] = json!(settled);
    if !stuck.is_empty() {
        tracing::warn!(batches = %json!(stuck), "payout batches not in a block long after signing; abandoning them");
        summary["stuck"] = json!(stuck);
    }
    if !context.store.open_payout_batches().await?.is_empty() {
        summary["note"] = json!("a batch is still in flight; a new one waits for it");
        return Ok(Pass::done(summary));
    }

    let due = context.store.payable_balances(minimum, max).await?;
    let (due, held) = hold_aside_undecodable(due);
    if !held.is_empty() {
        tracing::warn!(
            count = held.len(),
            "balances held aside: their addresses cannot be paid"
        );
        summary["held"] = json!(
            held.iter()
                .map(|h| json!({ "address": h.address, "amount": coins_text(h.units), "reason": h.reason }))
                .collect::<Vec<_>>()
        );
    }
    if due.is_empty() {
        return Ok(Pass::done(summary));
    }
    summary["due"] = json!(due.len());
    let fee = payouts.fee.units();
    let fee_payer = context.config.chain.reward_address.clone();
    let payer_pending = context.store.pending_of(&fee_payer).await?;
    let Some(due) = take_fee(due, &fee_payer, payer_pending, fee) else {
        return Ok(Pass::blocked(
            summary,
            format!(
                "payouts.fee {} is not covered by the reward address {fee_payer}'s pending {}: no batch is paid until its share reaches the fee (or payouts.fee is lowered)",
                coins_text(fee),
                coins_text(payer_pending)
            ),
        ));
    };
    let coins = payer.wallet_coins().await?;
    let plan = match plan_payment(&coins, &due, fee as u64)
        .map_err(|e| JobError::Invalid(format!("planning the payment: {e}")))?
    {
        PaymentPlan::Nothing => return Ok(Pass::done(summary)),
        PaymentPlan::Insufficient { available, needed } => {
            return Ok(Pass::blocked(
                summary,
                format!(
                    "the wallet's spendable outputs hold {}; the largest balance due needs {} with the fee: no batch is paid until the wallet {} receives more",
                    coins_text(available as i64),
                    coins_text(needed as i64),
                    context.config.chain.inode_wallet
                ),
            ));
        }
        PaymentPlan::Pay { recipients, .. } => NewBatch {
            kind: BatchKind::Payout,
            recipients,
            fee,
            fee_payer,
        },
        PaymentPlan::Consolidate { .. } => NewBatch {
            kind: BatchKind::Consolidation,
            recipients: Vec::new(),
            fee: 0,
            fee_payer,
        },
    };
    let Some(batch) = context.store.create_payout_batch(fence, &plan).await? else {
        summary["note"] = json!("balances changed while planning; the next run pays them");
        return Ok(Pass::done(summary));
    };
    crash_point("payouts:after-create");
    pause_point("payouts:after-create");
    let created = json!({
        "batch": batch.id, "kind": batch.kind, "recipients": batch.recipients.len(),
        "total": coins_text(batch.total), "fee": coins_text(batch.fee),
    });
    let now = payer.pay(batch).await?;
    summary["created"] = created;
    summary["created"]["now"] = json!(now);
    Ok(Pass::done(summary))
}

/// The wallet's spends, read to the chain's tip before anything moves (SPEC §5.3 point 5): the
/// blocks from the last one credited (one `get_blocks_details` call, the rewards pass's window)
/// and the node's pending transactions. A blocked pass, which changes nothing, while a foreign
/// spend is unresolved or while the blocks past the last one credited are more than that one
/// read reaches (a store restored from a backup); `None` when payouts may go on.
async fn spends_hold(context: &Context) -> Result<Option<Pass>, JobError> {
    let (config, store, chain) = (&context.config, &context.store, &context.chain);
    let wallet = Wallet::new(&config.chain.inode_wallet);
    let last = store.last_scanned().await?;
    let rewards = &config.rewards;
    let (offset, limit) = scan_request(
        last.as_ref(),
        rewards.start_height,
        rewards.blocks_per_run,
        rewards.confirmations,
    );
    let answer = chain.blocks_details(offset, limit).await?;
    let view = match plan_scan(
        last.as_ref(),
        offset,
        &answer,
        rewards.blocks_per_run,
        rewards.confirmations,
    ) {
        Err(problem) => SpendsView::Unreadable(problem.to_string()),
        Ok(_) => {
            if let Some(spends) = spends_in_blocks(&answer, &wallet) {
                store.record_block_spends(&spends).await?;
            }
            match answer.last() {
                Some(tip) if answer.len() >= limit as usize => SpendsView::Behind {
                    credited_to: last.as_ref().map_or(offset as i64 - 1, |l| l.height as i64),
                    read_to: tip.block.id as i64,
                },
                _ => SpendsView::Complete,
            }
        }
    };
    let info = chain.address_info(&config.chain.inode_wallet).await?;
    store
        .record_pending_spends(&pending_spends(store, &info, &wallet).await?)
        .await?;
    let unresolved = store.unresolved_foreign_spends().await?;
    let foreign: Vec<_> = unresolved.iter().map(|s| s.as_foreign()).collect();
    let Some(reason) = payouts_hold(&view, &foreign) else {
        return Ok(None);
    };
    let details = json!({
        "sender": "upow",
        "foreignSpends": unresolved.iter().map(|s| json!({
            "txHash": s.hash,
            "where": s.whereabouts().to_string(),
            "paid": coins_text(s.units()),
            "outputs": s.outputs.iter().map(|r| json!({ "address": r.address, "amount": coins_text(r.units) })).collect::<Vec<_>>(),
            "unreadable": s.unreadable,
        })).collect::<Vec<_>>(),
        "spendsView": match &view {
            SpendsView::Complete => json!("complete"),
            SpendsView::Behind { credited_to, read_to } => json!({ "creditedTo": credited_to, "readTo": read_to }),
            SpendsView::Unreadable(why) => json!({ "unreadable": why }),
        },
    });
    tracing::warn!(%reason, "payouts held");
    Ok(Some(Pass::blocked(details, reason)))
}

/// The wallet's pending spends as the node lists them: its pending transactions with an input
/// of the wallet, and, for an output the node says a pending transaction spends that none of
/// those (nor a batch of ours) does, a spend known only by that output.
async fn pending_spends(
    store: &minerpool_core::store::Store,
    info: &AddressInfo,
    wallet: &Wallet,
) -> Result<Vec<Spend>, JobError> {
    let mut spends: Vec<Spend> = info
        .pending_transactions
        .iter()
        .flatten()
        .filter_map(|tx| spend_of(tx, wallet))
        .collect();
    let covered: std::collections::HashSet<OutputKey> = spends
        .iter()
        .flat_map(|s| s.inputs.iter())
        .filter_map(|i| Some((i.tx_hash.clone()?, u8::try_from(i.index?).ok()?)))
        .collect();
    let uncovered: Vec<OutputKey> = info
        .pending_spent()
        .into_iter()
        .filter(|key| !covered.contains(key))
        .collect();
    let ours = store.inputs_used_by_batches(&uncovered).await?;
    spends.extend(uncovered.into_iter().filter(|key| !ours.contains(key)).map(
        |(tx_hash, index)| Spend {
            hash: format!("pending-spend-of:{tx_hash}:{index}"),
            inputs: vec![SpentOutput {
                tx_hash: Some(tx_hash),
                index: Some(u32::from(index)),
            }],
            outputs: Default::default(),
            change: 0,
            unreadable: Some(
                "the node lists this output of the wallet as spent by a pending transaction it does not show".into(),
            ),
        },
    ));
    Ok(spends)
}

fn wallet_key(context: &Context) -> Result<SigningKey, JobError> {
    let text = context.wallet_key.as_deref().ok_or_else(|| {
        JobError::Invalid("MINERPOOL_WALLET_KEY is required when payouts.sender is upow".into())
    })?;
    let key = parse_private_key(text)
        .map_err(|e| JobError::Invalid(format!("MINERPOOL_WALLET_KEY: {e}")))?;
    let address = address_of(key.verifying_key());
    if address != context.config.chain.inode_wallet {
        return Err(JobError::Invalid(format!(
            "MINERPOOL_WALLET_KEY is the key of {address}, not of chain.inodeWallet {}",
            context.config.chain.inode_wallet
        )));
    }
    Ok(key)
}

/// Where the chain's own blocks put a transaction.
enum OnChain {
    /// In this block, checked against the block's own transaction list.
    InBlock(i64),
    /// Known to the node but not (provably) in a block.
    Pending,
    NotFound,
}

/// One run's payer: the context, the run's fence and the wallet key, and what the run found
/// that its summary must show.
struct Payer<'a> {
    context: &'a Context,
    fence: &'a Fence,
    key: SigningKey,
    /// Batches whose push was answered "Transaction just added" while the node does not hold
    /// their transaction.
    not_held: Mutex<Vec<Value>>,
    /// Abandoning transactions the node did not take, with its answer.
    abandon_refused: Mutex<Vec<Value>>,
}

impl Payer<'_> {
    /// Seconds since signing, when that is past `payouts.abandonAfterSeconds`.
    fn stuck_for(&self, batch: &PayoutBatch) -> Option<i64> {
        let limit = self.context.config.payouts.abandon_after_seconds as i64;
        let signed = batch.signed_at?;
        let age = (bson::DateTime::now().timestamp_millis() - signed.timestamp_millis()) / 1000;
        (limit > 0
            && matches!(batch.state, BatchState::Signed | BatchState::Submitted)
            && age >= limit)
            .then_some(age)
    }

    /// What the chain lists for the iNode wallet.
    async fn wallet(&self) -> Result<AddressInfo, JobError> {
        self.fence.ensure_held()?;
        Ok(self
            .context
            .chain
            .address_info(&self.context.config.chain.inode_wallet)
            .await?)
    }

    /// The wallet's coins that can be spent now: confirmed unspent, not spent by a pending
    /// transaction, and not used by any batch of ours.
    async fn wallet_coins(&self) -> Result<Vec<Coin>, JobError> {
        let info = self.wallet().await?;
        let pending = info.pending_spent();
        let listed: Vec<OutputKey> = info.unspent().into_iter().collect();
        let ours = self.context.store.inputs_used_by_batches(&listed).await?;
        Ok(info
            .spendable_outputs
            .into_iter()
            .filter(|o| {
                let key = (o.tx_hash.clone(), o.index);
                !pending.contains(&key) && !ours.contains(&key)
            })
            .map(|o| Coin {
                tx_hash: o.tx_hash,
                index: o.index,
                units: o.amount.units() as u64,
            })
            .collect())
    }

    /// Signs a transaction spending `coins` to `outputs` plus `change` back to the wallet.
    fn sign(
        &self,
        coins: &[Coin],
        mut outputs: Vec<Output>,
        change: u64,
    ) -> Result<(String, String), JobError> {
        let bad = |e: minerpool_core::upow::UpowError| JobError::Invalid(e.to_string());
        let inputs = coins
            .iter()
            .map(|c| {
                let bytes = hex::decode(&c.tx_hash)
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .ok_or_else(|| {
                        JobError::Invalid(format!("chain gave output hash {:?}", c.tx_hash))
                    })?;
                Ok(Input {
                    tx_hash: bytes,
                    index: c.index,
                })
            })
            .collect::<Result<Vec<_>, JobError>>()?;
        if change > 0 {
            let own = decode_address(&self.context.config.chain.inode_wallet).map_err(bad)?;
            outputs.push(Output {
                address: own.to_vec(),
                units: change,
            });
        }
        let mut tx = Transaction::new(inputs, outputs, None).map_err(bad)?;
        let signers = vec![&self.key; tx.inputs.len()];
        tx.sign(&signers).map_err(bad)?;
        Ok((tx.to_hex(), tx.hash()))
    }

    /// Builds, signs, records and pushes a created batch. A batch that cannot be built is
    /// refunded: nothing of it was ever signed.
    async fn pay(&self, batch: PayoutBatch) -> Result<&'static str, JobError> {
        let coins = self.wallet_coins().await?;
        let selection = match batch.kind {
            BatchKind::Payout => select_coins(&coins, &[], (batch.total + batch.fee) as u64)
                .map(|s| (s.coins, s.change))
                .map_err(|e| e.to_string()),
            BatchKind::Consolidation => {
                let mut largest = coins;
                largest.sort_by_key(|c| std::cmp::Reverse(c.units));
                largest.truncate(MAX_INPUTS);
                if largest.len() < 2 {
                    Err("fewer than two coins to consolidate".to_owned())
                } else {
                    let sum = largest.iter().map(|c| c.units).sum();
                    Ok((largest, sum))
                }
            }
        };
        let (coins, change) = match selection {
            Ok(selected) => selected,
            Err(error) => {
                self.context
                    .store
                    .fail_unsigned_batch(self.fence, &batch, &error)
                    .await?;
                return Ok("failed");
            }
        };
        let outputs = batch
            .recipients
            .iter()
            .map(|r| {
                Ok(Output {
                    address: decode_address(&r.address)
                        .map_err(|e| JobError::Invalid(e.to_string()))?
                        .to_vec(),
                    units: r.units as u64,
                })
            })
            .collect::<Result<Vec<_>, JobError>>()?;
        let (hex, hash) = self.sign(&coins, outputs, change)?;
        let inputs = spent_inputs(&coins);
        if !self
            .context
            .store
            .record_signed_batch(self.fence, &batch.id, &hex, &hash, &inputs)
            .await?
        {
            return Err(JobError::Invalid(format!(
                "batch {} was no longer created when its transaction was recorded; nothing sent",
                batch.id
            )));
        }
        crash_point("payouts:after-sign");
        self.push(&batch.id, BatchState::Signed, &hex, &hash).await
    }

    /// Pushes stored signed bytes; only an acceptance, or "just added" for a transaction the
    /// node is seen to hold, changes the batch's state.
    async fn push(
        &self,
        id: &str,
        state: BatchState,
        hex: &str,
        hash: &str,
    ) -> Result<&'static str, JobError> {
        self.fence.ensure_held()?;
        let outcome = self.context.chain.push_transaction(hex, hash).await;
        crash_point("payouts:after-push");
        match outcome {
            PushOutcome::Accepted => {
                self.context
                    .store
                    .record_submitted_batch(self.fence, id)
                    .await?;
                crash_point("payouts:after-record");
                Ok("submitted")
            }
            PushOutcome::JustAdded => {
                let held = self.node_holds(hash).await?;
                let since = self
                    .context
                    .store
                    .record_held_check(self.fence, id, held)
                    .await?;
                if held {
                    self.context
                        .store
                        .record_submitted_batch(self.fence, id)
                        .await?;
                    return Ok("submitted");
                }
                let since = since.map(|t| t.try_to_rfc3339_string().unwrap_or_default());
                tracing::warn!(batch = %id, tx_hash = %hash, not_held_since = ?since, "the node answered \"Transaction just added\" but does not hold the transaction (get_transaction: not found); the batch is abandoned after payouts.abandonAfterSeconds unless it reaches a block");
                self.found(
                    &self.not_held,
                    json!({ "batch": id, "txHash": hash, "notHeldSince": since }),
                );
                Ok(if state == BatchState::Submitted {
                    "submitted"
                } else {
                    "signed"
                })
            }
            PushOutcome::NotAccepted(error) => {
                tracing::warn!(batch = %id, %error, "push not accepted; the batch stays signed and the next run asks the chain");
                self.context
                    .store
                    .record_batch_attempt(self.fence, id, &error)
                    .await?;
                Ok("signed")
            }
        }
    }

    /// Whether the node holds `hash`, pending or in a block, after it answered "Transaction just
    /// added" (which it does from a list of recent hashes, held or not).
    async fn node_holds(&self, hash: &str) -> Result<bool, JobError> {
        self.fence.ensure_held()?;
        Ok(self.context.chain.transaction_status(hash).await? != TransactionStatus::NotFound)
    }

    /// Notes something the summary must show.
    fn found(&self, list: &Mutex<Vec<Value>>, entry: Value) {
        list.lock().unwrap_or_else(|e| e.into_inner()).push(entry);
    }

    /// Where the chain's blocks put `hash`. A lookup that names a block is believed only when
    /// that block lists the transaction, and counts only once the block is
    /// `rewards.confirmations` deep (the same settled depth as income): a payout or an abandon in
    /// a block that may still be orphaned is not yet proof of anything.
    async fn on_chain(&self, hash: &str) -> Result<OnChain, JobError> {
        self.fence.ensure_held()?;
        let chain = &self.context.chain;
        let block = match chain.transaction_status(hash).await? {
            TransactionStatus::NotFound => return Ok(OnChain::NotFound),
            TransactionStatus::Pending => return Ok(OnChain::Pending),
            TransactionStatus::Confirmed { block } => block,
        };
        let depth = self.context.config.rewards.confirmations;
        let blocks = chain.blocks_details(block, depth + 1).await?;
        let holds = blocks
            .iter()
            .filter(|b| b.block.id == block)
            .any(|b| b.transactions.iter().any(|t| t.hash == hash));
        let settled = blocks
            .last()
            .is_some_and(|tip| tip.block.id >= block + u64::from(depth));
        Ok(match (holds, settled) {
            (true, true) => OnChain::InBlock(block as i64),
            (true, false) => OnChain::Pending,
            (false, _) => {
                tracing::warn!(%hash, block, "the chain names a block that does not list the transaction");
                OnChain::Pending
            }
        })
    }

    /// Moves an open batch on by what the chain's blocks show.
    async fn settle(&self, batch: PayoutBatch) -> Result<&'static str, JobError> {
        if batch.state == BatchState::Created {
            return self.pay(batch).await;
        }
        let (Some(hex), Some(hash)) = (batch.tx_hex.clone(), batch.tx_hash.clone()) else {
            return Err(JobError::Invalid(format!(
                "batch {} is {:?} but has no transaction",
                batch.id, batch.state
            )));
        };
        let own = self.on_chain(&hash).await?;
        if let OnChain::InBlock(block) = own {
            self.context
                .store
                .confirm_batch(self.fence, &batch, block)
                .await?;
            return Ok("confirmed");
        }
        if batch.state == BatchState::Abandoning {
            return self.continue_abandon(&batch).await;
        }
        if batch.abandon.is_some() || self.stuck_for(&batch).is_some() {
            return self.start_abandon(&batch).await;
        }
        match own {
            OnChain::Pending => {
                if batch.not_held_since.is_some() {
                    // Held again (re-pushed after the node's list of recent hashes moved on).
                    self.context
                        .store
                        .record_held_check(self.fence, &batch.id, true)
                        .await?;
                }
                if batch.state == BatchState::Signed {
                    self.context
                        .store
                        .record_submitted_batch(self.fence, &batch.id)
                        .await?;
                }
                Ok("submitted")
            }
            // Never reached this node, or dropped: the same bytes again, never a new transaction.
            _ => self.push(&batch.id, batch.state, &hex, &hash).await,
        }
    }

    /// Signs, records and pushes a transaction spending the batch's still-unspent inputs back to
    /// the wallet. Once that one is in a block the batch's own can never be.
    async fn start_abandon(&self, batch: &PayoutBatch) -> Result<&'static str, JobError> {
        let unspent = self.wallet().await?.unspent();
        let coins: Vec<Coin> = batch
            .inputs
            .iter()
            .filter_map(|i| {
                let index = u8::try_from(i.index).ok()?;
                unspent.contains(&(i.tx_hash.clone(), index)).then(|| Coin {
                    tx_hash: i.tx_hash.clone(),
                    index,
                    units: i.units as u64,
                })
            })
            .collect();
        if coins.is_empty() {
            // Spent in a block, and only our own transactions spend them: most likely by the
            // batch's own transaction, which a lagging lookup has not shown yet.
            tracing::warn!(batch = %batch.id, "cannot abandon: its inputs are already spent; waiting for the chain to show its transaction");
            return Ok(if batch.state == BatchState::Submitted {
                "submitted"
            } else {
                "signed"
            });
        }
        let total: u64 = coins.iter().map(|c| c.units).sum();
        let (hex, hash) = self.sign(&coins, Vec::new(), total)?;
        let abandonment = Abandonment {
            reason: batch.abandon.as_ref().map_or_else(
                || "not in a block long after signing".to_owned(),
                |a| a.reason.clone(),
            ),
            requested_at: batch
                .abandon
                .as_ref()
                .map_or_else(bson::DateTime::now, |a| a.requested_at),
            tx_hex: Some(hex.clone()),
            tx_hash: Some(hash.clone()),
            inputs: spent_inputs(&coins),
        };
        if !self
            .context
            .store
            .record_abandoning_batch(self.fence, batch, &abandonment)
            .await?
        {
            return Err(JobError::Invalid(format!(
                "batch {} changed while its abandon was recorded; nothing sent",
                batch.id
            )));
        }
        crash_point("payouts:after-abandon-sign");
        self.push_abandon(&batch.id, &hex, &hash).await
    }

    /// An abandoning batch: refunded once our spending transaction is in a block; otherwise its
    /// bytes are pushed again.
    async fn continue_abandon(&self, batch: &PayoutBatch) -> Result<&'static str, JobError> {
        let Some((Some(hex), Some(hash))) = batch
            .abandon
            .as_ref()
            .map(|a| (a.tx_hex.clone(), a.tx_hash.clone()))
        else {
            return Err(JobError::Invalid(format!(
                "batch {} is abandoning but has no abandoning transaction",
                batch.id
            )));
        };
        match self.on_chain(&hash).await? {
            OnChain::InBlock(block) => {
                self.context
                    .store
                    .finish_abandon(self.fence, batch, block)
                    .await?;
                tracing::info!(batch = %batch.id, block, "abandon proven in a block; amounts refunded");
                Ok("abandoned")
            }
            OnChain::Pending => Ok("abandoning"),
            OnChain::NotFound => self.push_abandon(&batch.id, &hex, &hash).await,
        }
    }

    async fn push_abandon(
        &self,
        id: &str,
        hex: &str,
        hash: &str,
    ) -> Result<&'static str, JobError> {
        self.fence.ensure_held()?;
        let answer = match self.context.chain.push_transaction(hex, hash).await {
            PushOutcome::Accepted => return Ok("abandoning"),
            PushOutcome::JustAdded if self.node_holds(hash).await? => return Ok("abandoning"),
            PushOutcome::JustAdded => {
                "Transaction just added, but get_transaction does not find it".to_owned()
            }
            PushOutcome::NotAccepted(error) => error,
        };
        tracing::warn!(batch = %id, tx_hash = %hash, answer = %answer, "the abandoning transaction was not taken by the node; the next run asks the chain and pushes the same bytes again");
        self.context
            .store
            .record_batch_attempt(self.fence, id, &format!("abandoning: {answer}"))
            .await?;
        self.found(
            &self.abandon_refused,
            json!({ "batch": id, "txHash": hash, "answer": answer }),
        );
        Ok("abandoning")
    }
}

fn spent_inputs(coins: &[Coin]) -> Vec<SpentInput> {
    coins
        .iter()
        .map(|c| SpentInput {
            tx_hash: c.tx_hash.clone(),
            index: i32::from(c.index),
            units: c.units as i64,
        })
        .collect()
}
