//! The fixed-depth tree and the clusters. Follows the Drain paper and the reference
//! implementation its authors benchmarked (logparser's Drain), so the published accuracy is the
//! bar, with two deliberate differences: a line shorter than the tree is deep still reaches a
//! leaf (the reference never stores such clusters, so each short line became its own template),
//! and every structure is bounded (see the crate documentation).

use crate::WILDCARD;
use crate::mask::Masks;
use std::collections::HashMap;
use std::sync::Arc;

/// Tree keys are short tokens: foldhash is several times faster than SipHash on them, and the
/// tree's shape is bounded (`max_children`), so hash flooding has nothing to grow.
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Tokens of a line that take part in mining; the rest of a longer line is one `<*>`.
pub const MAX_TOKENS: usize = 128;
/// Templates one leaf holds: each line is compared with every template of its leaf.
pub const MAX_LEAF_CLUSTERS: usize = 256;

/// The miner's parameters, named as in the Drain paper.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Tree depth including the root and the leaf layer: `depth - 2` leading tokens route a line.
    pub depth: usize,
    /// Fraction of a template's positions a line must match to join it (`st`).
    pub similarity: f64,
    /// Children per tree node; beyond it, tokens share the `<*>` child.
    pub max_children: usize,
    /// Templates in all; a line that would need another is not clustered.
    pub max_clusters: usize,
    /// Variables masked before mining.
    pub masks: Masks,
}

impl Settings {
    /// The settings `log_pattern()` uses on stored logs: Drain's usual depth 4 and a similarity
    /// of 0.5, the value the Drain authors chose for most of the Loghub datasets.
    pub fn for_logs() -> Self {
        Self {
            depth: 4,
            similarity: 0.5,
            max_children: 100,
            max_clusters: 10_000,
            masks: Masks::for_logs(),
        }
    }
}

/// A template's position in the miner; stable for the miner's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClusterId(u32);

/// A token of a template: `None` is a variable position.
type Token = Option<Box<str>>;

#[derive(Debug, Default)]
struct Node {
    children: Map<Box<str>, Node>,
    clusters: Vec<ClusterId>,
}

/// Mines templates from lines, one at a time, in the order given.
#[derive(Debug)]
pub struct Miner {
    settings: Settings,
    /// First layer: lines are only compared with lines of the same token count.
    by_length: Map<usize, Node>,
    templates: Vec<Vec<Token>>,
}

impl Miner {
    /// An empty miner with these settings.
    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            by_length: Map::default(),
            templates: Vec::new(),
        }
    }

    /// Mines one line: the template it joined or started, or `None` when the bounds left it
    /// out (then its pattern is [`Miner::unclustered`]).
    pub fn add(&mut self, line: &str) -> Option<ClusterId> {
        let masked = self.settings.masks.apply(line);
        let tokens = tokens(&masked);
        if let Some(id) = self.matching(&tokens) {
            let template = &mut self.templates[id.0 as usize];
            for (slot, token) in template.iter_mut().zip(&tokens) {
                if slot.as_deref().is_some_and(|kept| kept != *token) {
                    *slot = None;
                }
            }
            return Some(id);
        }
        self.start_template(&tokens)
    }

    /// Adds `template` (as [`Miner::template`] writes one: masked, variables as `<*>`) as a
    /// template of its own, without comparing it with the others: how a dictionary kept from
    /// earlier lines is loaded back. `None` when the bounds leave no room for it.
    pub fn seed(&mut self, template: &str) -> Option<ClusterId> {
        self.start_template(&tokens(template))
    }

    /// A new template of these tokens, in its leaf; `None` when the bounds leave no room.
    fn start_template(&mut self, tokens: &[&str]) -> Option<ClusterId> {
        if self.templates.len() >= self.settings.max_clusters {
            return None;
        }
        let id = ClusterId(u32::try_from(self.templates.len()).ok()?);
        let leaf = self.leaf_for_new(tokens);
        if leaf.clusters.len() >= MAX_LEAF_CLUSTERS {
            return None;
        }
        leaf.clusters.push(id);
        self.templates.push(to_template(tokens));
        Some(id)
    }

    /// The template of a cluster as mined so far, variables as `<*>`.
    pub fn template(&self, id: ClusterId) -> String {
        let template = &self.templates[id.0 as usize];
        let mut text = String::with_capacity(template.len() * 8);
        for (index, token) in template.iter().enumerate() {
            if index > 0 {
                text.push(' ');
            }
            text.push_str(token.as_deref().unwrap_or(WILDCARD));
        }
        text
    }

    /// The pattern of a line the bounds left out: its masked tokens.
    pub fn unclustered(&self, line: &str) -> String {
        tokens(&self.settings.masks.apply(line)).join(" ")
    }

    /// Templates mined so far.
    pub fn len(&self) -> usize {
        self.templates.len()
    }

    /// Whether no line has been mined yet.
    pub fn is_empty(&self) -> bool {
        self.templates.is_empty()
    }

    /// Leading tokens that route a line below the token-count layer.
    fn routing_tokens(&self, tokens: &[&str]) -> usize {
        self.settings.depth.saturating_sub(3).min(tokens.len())
    }

    /// The most similar template of the line's leaf, if similar enough.
    fn matching(&self, tokens: &[&str]) -> Option<ClusterId> {
        let mut node = self.by_length.get(&tokens.len())?;
        for token in &tokens[..self.routing_tokens(tokens)] {
            node = node
                .children
                .get(*token)
                .or_else(|| node.children.get(WILDCARD))?;
        }
        let mut best: Option<(f64, usize, ClusterId)> = None;
        for &id in &node.clusters {
            let (similarity, variables) = similarity(&self.templates[id.0 as usize], tokens);
            // Ties go to the more general template, as in the reference.
            if best.is_none_or(|(top, top_variables, _)| {
                similarity > top || (similarity == top && variables > top_variables)
            }) {
                best = Some((similarity, variables, id));
            }
        }
        best.filter(|(similarity, _, _)| *similarity >= self.settings.similarity)
            .map(|(_, _, id)| id)
    }

    /// The leaf a new template goes to, creating the path: a token with a digit, or one that
    /// finds the node full, goes under `<*>`.
    fn leaf_for_new(&mut self, tokens: &[&str]) -> &mut Node {
        let routing = self.routing_tokens(tokens);
        let max_children = self.settings.max_children;
        let mut node = self.by_length.entry(tokens.len()).or_default();
        for token in &tokens[..routing] {
            let key: &str = if node.children.contains_key(*token) {
                token
            } else if token.bytes().any(|byte| byte.is_ascii_digit()) {
                WILDCARD
            } else if node.children.contains_key(WILDCARD) {
                if node.children.len() < max_children {
                    token
                } else {
                    WILDCARD
                }
            } else if node.children.len() + 1 < max_children {
                token
            } else {
                WILDCARD
            };
            node = node.children.entry(Box::from(key)).or_default();
        }
        node
    }
}

/// Mines `lines` in order, then gives each its template's final form, so that equal templates
/// are equal strings however late a line made them general (a line the bounds left out: its
/// masked text; `None` stays `None`). Lines of one template share one string.
pub fn final_patterns<'a>(
    settings: Settings,
    lines: impl IntoIterator<Item = Option<&'a str>>,
) -> Vec<Option<Arc<str>>> {
    let mut miner = Miner::new(settings);
    let mined: Vec<_> = lines
        .into_iter()
        .map(|line| line.map(|text| (text, miner.add(text))))
        .collect();
    let mut templates: Map<ClusterId, Arc<str>> = Map::default();
    mined
        .into_iter()
        .map(|line| {
            line.map(|(text, cluster)| match cluster {
                Some(id) => templates
                    .entry(id)
                    .or_insert_with(|| miner.template(id).into())
                    .clone(),
                None => miner.unclustered(text).into(),
            })
        })
        .collect()
}

/// A new template's tokens: the line's, `<*>` as a variable position.
fn to_template(tokens: &[&str]) -> Vec<Token> {
    tokens
        .iter()
        .map(|token| (*token != WILDCARD).then(|| Box::from(*token)))
        .collect()
}

/// Whitespace-separated tokens, at most [`MAX_TOKENS`] (the rest as one `<*>`).
pub(crate) fn tokens(line: &str) -> Vec<&str> {
    let mut tokens: Vec<&str> = if line.is_ascii() {
        ascii_tokens(line)
    } else {
        line.split_whitespace().take(MAX_TOKENS + 1).collect()
    };
    if tokens.len() > MAX_TOKENS {
        tokens.truncate(MAX_TOKENS - 1);
        tokens.push(WILDCARD);
    }
    tokens
}

/// The tokens `split_whitespace` gives on an ASCII line, found byte by byte (most lines are
/// ASCII; decoding characters was a sixth of the miner's time).
fn ascii_tokens(line: &str) -> Vec<&str> {
    let space = |byte: u8| matches!(byte, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r');
    let bytes = line.as_bytes();
    let mut tokens = Vec::with_capacity(32);
    let mut at = 0;
    while tokens.len() <= MAX_TOKENS {
        while at < bytes.len() && space(bytes[at]) {
            at += 1;
        }
        let start = at;
        while at < bytes.len() && !space(bytes[at]) {
            at += 1;
        }
        if at == start {
            break;
        }
        // ASCII: every byte offset is a character boundary.
        tokens.push(&line[start..at]);
    }
    tokens
}

/// Fraction of positions where the template's constant equals the line's token, and the
/// template's variable count (the tie-breaker).
fn similarity(template: &[Token], tokens: &[&str]) -> (f64, usize) {
    if template.is_empty() {
        return (1.0, 0);
    }
    let mut same = 0;
    let mut variables = 0;
    for (slot, token) in template.iter().zip(tokens) {
        match slot {
            None => variables += 1,
            Some(constant) if **constant == **token => same += 1,
            Some(_) => {}
        }
    }
    (same as f64 / template.len() as f64, variables)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn miner(masks: &[&str]) -> Miner {
        Miner::new(Settings {
            depth: 4,
            similarity: 0.5,
            max_children: 100,
            max_clusters: 100,
            masks: Masks::new(masks).unwrap(),
        })
    }

    #[test]
    fn differing_positions_become_variables() {
        let mut miner = miner(&[]);
        let a = miner.add("user alice logged in from web").unwrap();
        let b = miner.add("user bob logged in from web").unwrap();
        let c = miner.add("disk sda full").unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(miner.template(a), "user <*> logged in from web");
        assert_eq!(miner.template(c), "disk sda full");
        assert_eq!(miner.len(), 2);
    }

    #[test]
    fn lines_below_the_similarity_start_their_own_template() {
        let mut miner = miner(&[]);
        let a = miner.add("connection closed by peer").unwrap();
        let b = miner.add("connection reset by kernel").unwrap();
        assert_eq!(a, b, "2 of 4 positions agree: 0.5 >= 0.5");
        let c = miner.add("connection x y z").unwrap();
        assert_ne!(a, c, "1 of 4 positions agree");
    }

    #[test]
    fn masked_variables_join_and_count_as_variables() {
        let mut miner = miner(&[r"\d+"]);
        let a = miner.add("took 12 ms").unwrap();
        let b = miner.add("took 7 ms").unwrap();
        assert_eq!(a, b);
        assert_eq!(miner.template(a), "took <*> ms");
    }

    #[test]
    fn short_lines_reach_a_leaf_and_generalise() {
        let mut miner = Miner::new(Settings {
            depth: 6,
            ..Settings::for_logs()
        });
        let a = miner.add("started worker-1").unwrap();
        let b = miner.add("started worker-2").unwrap();
        assert_eq!(a, b);
        assert_eq!(miner.template(a), "started worker-<*>");
        assert_eq!(miner.add(""), miner.add("  "));
    }

    #[test]
    fn ascii_lines_split_like_any_other() {
        for line in ["", "  a\tb\x0bc\x0c d\r\ne  ", "one", " lead", "trail "] {
            assert_eq!(
                ascii_tokens(line),
                line.split_whitespace().collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn long_lines_are_cut_to_the_token_bound() {
        let mut miner = miner(&[]);
        let long: Vec<String> = (0..1000).map(|i| format!("w{i}")).collect();
        let id = miner.add(&long.join(" ")).unwrap();
        let template = miner.template(id);
        assert_eq!(template.split(' ').count(), MAX_TOKENS);
        assert!(template.ends_with(" w126 <*>"), "{template}");
    }

    #[test]
    fn the_cluster_bound_leaves_new_lines_unclustered() {
        let mut miner = Miner::new(Settings {
            max_clusters: 2,
            ..Settings::for_logs()
        });
        assert!(miner.add("alpha one").is_some());
        assert!(miner.add("beta two").is_some());
        assert_eq!(miner.add("gamma   three at 0x1f"), None);
        assert_eq!(
            miner.unclustered("gamma   three at 0x1f"),
            "gamma three at <*>"
        );
        assert!(
            miner.add("alpha one").is_some(),
            "existing templates still match"
        );
    }

    #[test]
    fn a_leaf_holds_a_bounded_number_of_templates() {
        let mut miner = Miner::new(Settings {
            similarity: 1.0,
            ..Settings::for_logs()
        });
        let clustered = (0..MAX_LEAF_CLUSTERS + 10)
            .filter(|i| miner.add(&format!("same {}", char_word(*i))).is_some())
            .count();
        assert_eq!(clustered, MAX_LEAF_CLUSTERS);
    }

    /// A digit-free word per number, so the tree does not mask it.
    fn char_word(mut i: usize) -> String {
        let mut word = String::new();
        loop {
            word.push((b'a' + (i % 26) as u8) as char);
            i /= 26;
            if i == 0 {
                return word;
            }
        }
    }
}
