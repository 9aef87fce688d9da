//! Grouping accuracy, the metric of the Loghub benchmark (Zhu et al., ICSE-SEIP 2019): a line is
//! parsed correctly when the lines grouped with it are exactly the lines of its true event.

use std::collections::HashMap;
use std::hash::Hash;

/// Correct lines over all lines; `truth[i]` and `parsed[i]` are line i's true event and the
/// group it was put in (for Drain, its template text: equal templates are one group).
pub fn grouping_accuracy<T: Eq + Hash, P: Eq + Hash>(truth: &[T], parsed: &[P]) -> f64 {
    assert_eq!(truth.len(), parsed.len(), "one group per line");
    if truth.is_empty() {
        return 1.0;
    }
    let mut truth_sizes: HashMap<&T, usize> = HashMap::new();
    for event in truth {
        *truth_sizes.entry(event).or_default() += 1;
    }
    let mut groups: HashMap<&P, Vec<usize>> = HashMap::new();
    for (line, group) in parsed.iter().enumerate() {
        groups.entry(group).or_default().push(line);
    }
    let correct: usize = groups
        .values()
        .filter(|lines| {
            let event = &truth[lines[0]];
            lines.iter().all(|line| truth[*line] == *event) && truth_sizes[event] == lines.len()
        })
        .map(Vec::len)
        .sum();
    correct as f64 / truth.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_groups_that_equal_a_true_event() {
        // E1 split in two groups (both wrong), E2 exact, E3 merged with E4 (both wrong).
        let truth = ["E1", "E1", "E2", "E3", "E4"];
        let parsed = ["a", "b", "c", "d", "d"];
        assert_eq!(grouping_accuracy(&truth, &parsed), 0.2);
        assert_eq!(grouping_accuracy(&truth, &truth), 1.0);
    }
}
