//! Local repairs of a matching after one change, valid while no reservation binds (see the
//! module doc of [`super`] for why they reach the same matching as a full computation).
//!
//! Two moves suffice. *Propose*: a slot without a node asks the nodes it ranks below a
//! ceiling, best first; a node under the bound takes it, a node at the bound takes it only
//! by bumping the slot it ranks lowest, if that ranks below the newcomer, and the bumped slot
//! proposes in turn (deferred acceptance). *Fill*: a node under the bound pulls the slot it
//! ranks highest among those that rank the node above their own; the node that slot left
//! then fills in turn.

use super::matching::{GlobalCell, Model, NONE};

/// A slot asking for a node: (slot, ceiling, may settle); see [`Model::propose`].
pub(super) type Proposal = (u32, Option<(u64, u64)>, bool);
use super::score::{best_below, score};

impl Model {
    /// Takes `slot` off its node.
    pub(super) fn unassign(&mut self, slot: u32) {
        let s = &mut self.slots[slot as usize];
        let n = &mut self.nodes[s.owner as usize];
        s.owner = NONE;
        n.used = n.used.minus(&s.need);
        if let Some(i) = n.held.iter().position(|&h| h == slot) {
            n.held.swap_remove(i);
        }
    }

    /// The held slot `node` ranks lowest, with its key there.
    pub(super) fn worst_held(&self, node: u32) -> Option<(u32, (u64, u64, u64))> {
        let n = &self.nodes[node as usize];
        n.held
            .iter()
            .map(|&h| {
                let s = &self.slots[h as usize];
                (h, s.key_at(s.score))
            })
            .min_by_key(|&(_, key)| key)
    }

    /// Deferred acceptance for `queue`: (slot, ceiling, may settle) triples, the ceiling
    /// being the key of the node the slot last left (`None`: from the top), and "may
    /// settle" true when the best node below the ceiling is the slot's top node (it starts
    /// from the top, or it left its top node because that node is gone). Nodes that gain a
    /// slot go to `touched`.
    pub(super) fn propose(&mut self, mut queue: Vec<Proposal>, touched: &mut Vec<u32>) {
        while let Some((slot, ceiling, may_settle)) = queue.pop() {
            let s = self.slots[slot as usize];
            let group = &self.groups[s.group as usize];
            let Some(pick) = best_below(s.hash, &group.hashes, ceiling) else {
                self.mark_unsettled(slot); // nothing left below: pending
                continue;
            };
            let node = group.members[pick.pos as usize];
            let cap = self.caps[node as usize] as usize;
            if self.nodes[node as usize].held.len() < cap {
                self.assign(slot, node, pick.score);
                self.set_settled(slot, may_settle);
                touched.push(node);
                continue;
            }
            let worst = self.worst_held(node);
            if let Some((worst, worst_key)) = worst.filter(|&(_, w)| s.key_at(pick.score) > w) {
                self.unassign(worst);
                self.assign(slot, node, pick.score);
                self.set_settled(slot, may_settle);
                touched.push(node);
                queue.push((worst, Some((worst_key.1, pick.hash)), false));
            } else {
                queue.push((slot, Some(pick.key()), false));
            }
        }
    }

    /// The slot `node` ranks highest among those that rank it above where they are.
    fn best_suitor(&self, node: u32) -> Option<(u32, u64)> {
        let n = &self.nodes[node as usize];
        let mut best: Option<(u32, (u64, u64, u64))> = None;
        for &i in &self.unsettled {
            let s = &self.slots[i as usize];
            if !s.live
                || s.settled
                || s.pinned
                || s.owner == node
                || !self.groups[s.group as usize].is_member[node as usize]
            {
                continue;
            }
            let here = score(s.hash, n.hash);
            let prefers =
                s.owner == NONE || (here, n.hash) > (s.score, self.nodes[s.owner as usize].hash);
            let key = s.key_at(here);
            if prefers && best.is_none_or(|(_, b)| key > b) {
                best = Some((i, key));
            }
        }
        best.map(|(slot, key)| (slot, key.1))
    }

    /// Fills the nodes in `work` up to the bound with the slots that prefer them.
    pub(super) fn fill(&mut self, mut work: Vec<u32>, touched: &mut Vec<u32>) {
        let slots = &mut self.slots;
        self.unsettled.retain(|&i| {
            let s = &mut slots[i as usize];
            s.listed = s.live && !s.settled && !s.pinned;
            s.listed
        });
        while let Some(node) = work.pop() {
            while self.nodes[node as usize].is_active()
                && self.nodes[node as usize].held.len() < self.caps[node as usize] as usize
            {
                let Some((slot, here)) = self.best_suitor(node) else {
                    break;
                };
                let old = self.slots[slot as usize].owner;
                if old != NONE {
                    self.unassign(slot);
                    work.push(old);
                }
                self.assign(slot, node, here);
                self.mark_unsettled(slot); // moved up; maybe to its top, maybe not
                touched.push(node);
            }
        }
    }

    /// Takes a new active node's share: the slots that rank it above where they are, best
    /// first up to the bound; the nodes they leave then fill.
    pub(super) fn intake(&mut self, node: u32, touched: &mut Vec<u32>) {
        let n = &self.nodes[node as usize];
        let mut suitors: Vec<((u64, u64, u64), u32)> = Vec::new();
        for (i, s) in self.slots.iter().enumerate() {
            if !s.live || s.pinned || !self.groups[s.group as usize].is_member[node as usize] {
                continue;
            }
            let here = score(s.hash, n.hash);
            if s.owner == NONE || (here, n.hash) > (s.score, self.nodes[s.owner as usize].hash) {
                suitors.push((s.key_at(here), i as u32));
            }
        }
        suitors.sort_unstable_by(|a, b| b.cmp(a));
        let taken = suitors.len().min(self.caps[node as usize] as usize);
        for &(_, slot) in &suitors[taken..] {
            self.mark_unsettled(slot); // prefers the new node, which is full
        }
        let mut work = Vec::new();
        for &((_, here, _), slot) in &suitors[..taken] {
            // A slot on its top node that prefers the new node has it as its new top.
            let settled = self.slots[slot as usize].settled;
            let old = self.slots[slot as usize].owner;
            if old != NONE {
                self.unassign(slot);
                work.push(old);
            }
            self.assign(slot, node, here);
            self.set_settled(slot, settled && old != NONE);
        }
        touched.push(node);
        work.push(node);
        self.fill(work, touched);
    }

    /// Gives a new active node its global slots (placed; capacity is checked after).
    pub(super) fn add_globals_on(&mut self, node: u32) {
        for svc in self.services.values_mut() {
            if svc.spec.mode == crate::spec::Mode::Global
                && self.groups[svc.group as usize].is_member[node as usize]
            {
                svc.global.push(GlobalCell { node, placed: true });
                let n = &mut self.nodes[node as usize];
                n.used = n.used.plus(&svc.spec.reservations);
            }
        }
    }

    /// Whether every node in `touched` is within its capacity.
    pub(super) fn all_fit(&self, touched: &[u32]) -> bool {
        touched
            .iter()
            .all(|&n| self.nodes[n as usize].within_capacity())
    }
}
