//! The shipper's core guarantee in one place: the checkpoint only advances over what Kafka
//! acknowledged. Every line sent gets a message number and the position just past it; Kafka's
//! acknowledgements arrive in any order; the acknowledged position is the end of the longest
//! prefix of sent lines that are all acknowledged, so a line still in flight (or failed) is never
//! stepped over, whatever came back after it.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

/// A position in the hourly files: file name and byte offset.
pub(super) type Position = (Arc<str>, u64);

/// Lines sent and not yet part of the acknowledged prefix.
#[derive(Debug, Default)]
pub(super) struct AckWindow {
    /// Sent lines in send order: message number and the position past the line.
    sent: VecDeque<(usize, Position)>,
    /// Acknowledged message numbers not yet at the front of `sent`.
    acked: BTreeSet<usize>,
    next_message_no: usize,
}

impl AckWindow {
    /// Records a line sent, ending at `position`; returns its message number (the delivery
    /// report's opaque value).
    pub(super) fn sent(&mut self, position: Position) -> usize {
        let message_no = self.next_message_no;
        self.next_message_no += 1;
        self.sent.push_back((message_no, position));
        message_no
    }

    /// The message number the next [`AckWindow::sent`] will give.
    pub(super) fn next_message_no(&self) -> usize {
        self.next_message_no
    }

    /// Records Kafka's acknowledgement of `message_no` (an unknown number is ignored).
    pub(super) fn acknowledged(&mut self, message_no: usize) {
        if self
            .sent
            .front()
            .is_some_and(|(first, _)| message_no >= *first)
        {
            self.acked.insert(message_no);
        }
    }

    /// Drops the acknowledged prefix; returns how many lines it held and the position past its
    /// last line (`None` when the front line is not acknowledged yet).
    pub(super) fn advance(&mut self) -> (u64, Option<Position>) {
        let mut delivered = 0;
        let mut position = None;
        while let Some((message_no, _)) = self.sent.front() {
            if !self.acked.remove(message_no) {
                break;
            }
            position = self.sent.pop_front().map(|(_, position)| position);
            delivered += 1;
        }
        (delivered, position)
    }

    /// Lines sent and not yet acknowledged in order.
    pub(super) fn len(&self) -> usize {
        self.sent.len()
    }

    /// Whether every line sent is in the acknowledged prefix.
    pub(super) fn is_empty(&self) -> bool {
        self.sent.is_empty()
    }

    /// Forgets every line in flight (they are sent again from the checkpoint).
    pub(super) fn clear(&mut self) {
        self.sent.clear();
        self.acked.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(offset: u64) -> Position {
        (Arc::from("agent.2026-01-01-00.log"), offset)
    }

    #[test]
    fn advances_only_over_a_contiguous_acknowledged_prefix() {
        let mut window = AckWindow::default();
        let [a, b, c] = [10, 20, 30].map(|end| window.sent(at(end)));
        window.acknowledged(b);
        window.acknowledged(c);
        assert_eq!(
            window.advance(),
            (0, None),
            "the first line is still in flight"
        );
        window.acknowledged(a);
        assert_eq!(window.advance(), (3, Some(at(30))));
        assert!(window.is_empty());
    }

    #[test]
    fn a_cleared_window_ignores_late_acknowledgements() {
        let mut window = AckWindow::default();
        let first = window.sent(at(10));
        window.clear();
        let second = window.sent(at(10));
        window.acknowledged(first);
        assert_eq!(window.advance(), (0, None));
        window.acknowledged(second);
        assert_eq!(window.advance(), (1, Some(at(10))));
    }

    proptest! {
        /// Whatever order acknowledgements come in, and whichever never come, the position is the
        /// end of the longest all-acknowledged prefix, and it never moves back.
        #[test]
        fn the_position_is_the_end_of_the_longest_acknowledged_prefix(
            lines in 1usize..60,
            order in proptest::collection::vec(any::<prop::sample::Index>(), 0..80),
        ) {
            let mut window = AckWindow::default();
            let numbers: Vec<usize> =
                (1..=lines as u64).map(|i| window.sent(at(i * 100))).collect();
            let mut acknowledged = vec![false; lines];
            let mut last = 0u64;
            let mut delivered = 0u64;
            for index in order {
                let i = index.index(lines);
                acknowledged[i] = true;
                window.acknowledged(numbers[i]);
                let (count, position) = window.advance();
                delivered += count;
                let prefix = acknowledged.iter().take_while(|a| **a).count() as u64;
                if let Some((_, offset)) = position {
                    prop_assert!(offset > last);
                    last = offset;
                }
                prop_assert_eq!(last, prefix * 100);
                prop_assert_eq!(delivered, prefix);
                prop_assert_eq!(window.len() as u64, lines as u64 - prefix);
            }
        }
    }
}
