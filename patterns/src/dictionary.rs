//! Templates with ids that stay: a dictionary kept from one batch of lines to the next (the warm
//! table's pattern ids, mined as `collector compact` builds each hour).
//!
//! A line's id is the smallest id whose template covers it: same token count, and every
//! constant position equal to the line's masked token. Lines no template covers are mined by a
//! [`Miner`] loaded with the dictionary, so they join a template (making it more general) or
//! start one with the next id; then every line is given its covering id again. Ids are
//! therefore a function of the dictionary and the lines in their order, and once a batch has
//! been mined, mining it again finds every line covered and changes nothing: a rerun, or a
//! second compactor, gives the same ids. Bounded as the miner is: at most `max_clusters`
//! templates; a line the bounds leave out has no id.

use crate::WILDCARD;
use crate::drain::{ClusterId, Miner, Settings, tokens};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// A template's id in a dictionary: 1, 2, ... in the order templates were first mined.
pub type PatternId = i64;

/// A template: its tokens, `None` where a variable is.
type Template = Vec<Option<Box<str>>>;

/// Templates by id, and an index to find the ones that may cover a line.
#[derive(Debug)]
pub struct Dictionary {
    settings: Settings,
    templates: BTreeMap<PatternId, Template>,
    /// (token count, first token or `None` when it is a variable) -> ids, ascending.
    index: HashMap<(usize, Option<Box<str>>), BTreeSet<PatternId>>,
}

impl Dictionary {
    /// An empty dictionary mining with `settings`.
    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            templates: BTreeMap::new(),
            index: HashMap::new(),
        }
    }

    /// Puts `template` (as the miner writes one) under `id`, replacing what `id` had.
    pub fn insert(&mut self, id: PatternId, template: &str) {
        let template: Template = tokens(template)
            .iter()
            .map(|token| (*token != WILDCARD).then(|| Box::from(*token)))
            .collect();
        if let Some(old) = self.templates.remove(&id)
            && let Some(ids) = self.index.get_mut(&index_key(&old))
        {
            ids.remove(&id);
        }
        self.index
            .entry(index_key(&template))
            .or_default()
            .insert(id);
        self.templates.insert(id, template);
    }

    /// The template of `id`, variables as `<*>`.
    pub fn template(&self, id: PatternId) -> Option<String> {
        self.templates.get(&id).map(render)
    }

    /// Every id with its template, ascending.
    pub fn templates(&self) -> impl Iterator<Item = (PatternId, String)> + '_ {
        self.templates
            .iter()
            .map(|(id, template)| (*id, render(template)))
    }

    /// Templates held.
    pub fn len(&self) -> usize {
        self.templates.len()
    }

    /// Whether it holds no template.
    pub fn is_empty(&self) -> bool {
        self.templates.is_empty()
    }

    /// The id of the template covering `line`, without mining.
    pub fn id_of(&self, line: &str) -> Option<PatternId> {
        self.covering(&tokens(&self.settings.masks.apply(line)))
    }

    /// Each line's id, in order, after mining the lines no template covers (see the module
    /// documentation). `None` for a line the bounds leave out.
    pub fn assign(&mut self, lines: &[&str]) -> Vec<Option<PatternId>> {
        let masked: Vec<_> = lines
            .iter()
            .map(|line| self.settings.masks.apply(line))
            .collect();
        let mut ids: Vec<_> = masked
            .iter()
            .map(|line| self.covering(&tokens(line)))
            .collect();
        if ids.iter().all(Option::is_some) {
            return ids;
        }
        let mut miner = Miner::new(self.settings.clone());
        let mut ids_of_clusters: HashMap<ClusterId, PatternId> = HashMap::new();
        for (id, template) in &self.templates {
            if let Some(cluster) = miner.seed(&render(template)) {
                ids_of_clusters.insert(cluster, *id);
            }
        }
        let mut next = self.templates.keys().next_back().map_or(1, |last| last + 1);
        let mut changed = BTreeMap::new();
        for (line, id) in lines.iter().zip(&ids) {
            if id.is_none()
                && let Some(cluster) = miner.add(line)
            {
                let id = *ids_of_clusters.entry(cluster).or_insert_with(|| {
                    next += 1;
                    next - 1
                });
                changed.insert(id, cluster);
            }
        }
        for (id, cluster) in changed {
            self.insert(id, &miner.template(cluster));
        }
        for (line, id) in masked.iter().zip(&mut ids) {
            if id.is_none() {
                *id = self.covering(&tokens(line));
            }
        }
        ids
    }

    /// The smallest id whose template covers these masked tokens.
    fn covering(&self, tokens: &[&str]) -> Option<PatternId> {
        let first = tokens.first().map(|token| Box::from(*token));
        let candidates = |key: (usize, Option<Box<str>>)| {
            self.index
                .get(&key)
                .into_iter()
                .flatten()
                .copied()
                .find(|id| covers(&self.templates[id], tokens))
        };
        let literal = first.is_some().then(|| candidates((tokens.len(), first)));
        [literal.flatten(), candidates((tokens.len(), None))]
            .into_iter()
            .flatten()
            .min()
    }
}

fn index_key(template: &Template) -> (usize, Option<Box<str>>) {
    (template.len(), template.first().cloned().flatten())
}

fn covers(template: &Template, tokens: &[&str]) -> bool {
    template.len() == tokens.len()
        && template
            .iter()
            .zip(tokens)
            .all(|(slot, token)| slot.as_deref().is_none_or(|constant| constant == *token))
}

fn render(template: &Template) -> String {
    template
        .iter()
        .map(|token| token.as_deref().unwrap_or(WILDCARD))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines() -> Vec<String> {
        let mut lines = Vec::new();
        for i in 0..50 {
            lines.push(format!("user u{i} logged in from web"));
            lines.push(format!("disk sd{} is {i}% full", ["a", "b"][i % 2]));
            lines.push(format!("cache miss for key k{i}"));
        }
        lines
    }

    fn refs(lines: &[String]) -> Vec<&str> {
        lines.iter().map(String::as_str).collect()
    }

    #[test]
    fn ids_are_given_in_first_seen_order_and_mining_again_changes_nothing() {
        let lines = lines();
        let mut dictionary = Dictionary::new(Settings::for_logs());
        let ids = dictionary.assign(&refs(&lines));
        assert_eq!(&ids[..3], &[Some(1), Some(2), Some(3)]);
        assert!(ids.iter().all(Option::is_some));
        let templates: Vec<_> = dictionary.templates().collect();
        assert_eq!(
            templates,
            [
                (1, "user <*> logged in from web".to_owned()),
                (2, "disk <*> is <*> full".to_owned()),
                (3, "cache miss for key <*>".to_owned()),
            ]
        );
        assert_eq!(dictionary.assign(&refs(&lines)), ids);
        assert_eq!(dictionary.templates().collect::<Vec<_>>(), templates);
    }

    #[test]
    fn a_dictionary_loaded_back_gives_the_same_ids_and_new_lines_the_next_ones() {
        let lines = lines();
        let mut first = Dictionary::new(Settings::for_logs());
        let ids = first.assign(&refs(&lines));
        let mut loaded = Dictionary::new(Settings::for_logs());
        for (id, template) in first.templates() {
            loaded.insert(id, &template);
        }
        assert_eq!(loaded.assign(&refs(&lines)), ids);
        let later = [
            "cache miss for key k999",
            "connection to 10.0.0.1 refused",
            "connection to 10.0.0.2 refused",
        ];
        assert_eq!(loaded.assign(&later), [Some(3), Some(4), Some(4)]);
        assert_eq!(loaded.id_of("user zed logged in from web"), Some(1));
        assert_eq!(loaded.id_of("something never seen"), None);
    }

    #[test]
    fn a_line_joining_a_template_makes_it_more_general_under_the_same_id() {
        let mut dictionary = Dictionary::new(Settings::for_logs());
        assert_eq!(dictionary.assign(&["job alpha done ok"]), [Some(1)]);
        assert_eq!(dictionary.assign(&["job beta done ok"]), [Some(1)]);
        assert_eq!(dictionary.template(1).unwrap(), "job <*> done ok");
    }

    #[test]
    fn the_dictionary_is_bounded_by_the_miners_template_bound() {
        let mut dictionary = Dictionary::new(Settings {
            max_clusters: 2,
            ..Settings::for_logs()
        });
        let ids = dictionary.assign(&["alpha one", "beta two three", "gamma x y z"]);
        assert_eq!(ids, [Some(1), Some(2), None]);
        assert_eq!(dictionary.len(), 2);
    }
}
