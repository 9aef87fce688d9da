//! Agent resends: an agent restarted after a crash ships again from its checkpoint, so events
//! already stored come back with new Kafka offsets. Each agent numbers its events with `seq` in
//! file order, and one machine's events share a Kafka partition (the message key) and arrive in
//! order, so an event at or below the highest `seq` stored for its machine is a repeat.
//!
//! The highest stored `seq` of each machine is kept in the table (an application transaction per
//! machine, committed with the rows, see the `warm_table` crate). This keeps what this collector knows
//! of it per Kafka partition: looked up in the table the first time a machine is met after the
//! partition was assigned, then advanced by each commit. A partition newly assigned starts over,
//! since another collector may have stored that partition's machines meanwhile.

use logrecord::LogRecord;
use std::collections::{BTreeMap, HashMap};

/// What is known of one partition's machines.
#[derive(Debug, Default, Clone)]
pub(crate) struct Machines {
    /// Highest `seq` stored per machine (`None`: the table holds none of its events).
    stored: HashMap<String, Option<u64>>,
}

impl Machines {
    /// Machines among `records` not looked up yet.
    pub(crate) fn unknown<'a>(&self, records: &'a [LogRecord]) -> Vec<&'a str> {
        let mut unknown: Vec<&str> = records
            .iter()
            .map(|r| r.machine.as_str())
            .filter(|m| !self.stored.contains_key(*m))
            .collect();
        unknown.sort_unstable();
        unknown.dedup();
        unknown
    }

    /// Records what the table holds for a machine.
    pub(crate) fn learn(&mut self, machine: &str, stored: Option<u64>) {
        self.stored.insert(machine.to_owned(), stored);
    }

    /// Removes repeats from `records` (in arrival order; every machine must be known) and returns
    /// the new highest `seq` per machine and how many were dropped. Nothing is changed here: the
    /// highs become stored only when the commit that carries them succeeds ([`Machines::stored`]).
    pub(crate) fn drop_repeats(
        &self,
        records: &mut Vec<LogRecord>,
    ) -> (BTreeMap<String, u64>, usize) {
        let mut highs: BTreeMap<String, u64> = BTreeMap::new();
        let before = records.len();
        records.retain(|record| {
            let high = highs
                .get(&record.machine)
                .copied()
                .or_else(|| self.stored.get(&record.machine).copied().flatten());
            if high.is_some_and(|high| record.seq <= high) {
                return false;
            }
            highs.insert(record.machine.clone(), record.seq);
            true
        });
        (highs, before - records.len())
    }

    /// The highs a commit stored.
    pub(crate) fn stored(&mut self, highs: &BTreeMap<String, u64>) {
        for (machine, seq) in highs {
            self.stored.insert(machine.clone(), Some(*seq));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(machine: &str, seq: u64) -> LogRecord {
        LogRecord::from_json_line(&format!(
            r#"{{"seq":{seq},"id":"01930000-0000-7000-8000-{seq:012x}","timestamp":"2026-01-01T00:00:00Z","level":"INFO","target":"t","message":"m","cluster":"c","machine":"{machine}"}}"#
        ))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn repeats_of_stored_and_of_the_same_batch_are_dropped() {
        let mut machines = Machines::default();
        let mut records = vec![
            record("a", 5),
            record("a", 6),
            record("b", 1),
            record("a", 6),
            record("c", 3),
        ];
        assert_eq!(machines.unknown(&records), ["a", "b", "c"]);
        machines.learn("a", Some(5));
        machines.learn("b", None);
        machines.learn("c", Some(9));
        assert!(machines.unknown(&records).is_empty());
        let (highs, dropped) = machines.drop_repeats(&mut records);
        assert_eq!(dropped, 3);
        assert_eq!(
            records
                .iter()
                .map(|r| (r.machine.as_str(), r.seq))
                .collect::<Vec<_>>(),
            [("a", 6), ("b", 1)]
        );
        assert_eq!(highs, [("a".to_owned(), 6), ("b".to_owned(), 1)].into());
        // Not stored until committed: a retry of the same batch drops the same repeats.
        let mut again = vec![record("a", 6)];
        assert_eq!(machines.drop_repeats(&mut again).1, 0);
        machines.stored(&highs);
        assert_eq!(machines.drop_repeats(&mut again).1, 1);
    }
}
