//! The miner on the 12 labelled Loghub 2k datasets, with the settings the Drain authors used:
//! grouping accuracy at least the published Drain figure on every one (the bar of the issue;
//! Drain3 and the speed comparison are in `bench/log_patterns.sh`).

use patterns::{Dictionary, grouping_accuracy, loghub};

/// Published Drain grouping accuracy (logparser's Drain README, ICSE-SEIP'19), as listed in
/// ../shared/loghub_2k/README.md.
const PUBLISHED: &[(&str, f64)] = &[
    ("HDFS", 0.9975),
    ("Spark", 0.92),
    ("Zookeeper", 0.9665),
    ("BGL", 0.9625),
    ("HPC", 0.887),
    ("Windows", 0.997),
    ("Linux", 0.69),
    ("Android", 0.911),
    ("HealthApp", 0.78),
    ("Apache", 1.0),
    ("Proxifier", 0.5265),
    ("OpenSSH", 0.7875),
];

#[test]
fn grouping_accuracy_meets_the_published_drain_figure_on_every_dataset() {
    let datasets = loghub::load(&loghub::default_dir()).unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(datasets.len(), PUBLISHED.len());
    let mut report = Vec::new();
    for dataset in &datasets {
        assert_eq!(dataset.contents.len(), 2000, "{}", dataset.name);
        let published = PUBLISHED
            .iter()
            .find(|(name, _)| *name == dataset.name)
            .unwrap_or_else(|| panic!("no published figure for {}", dataset.name))
            .1;
        let accuracy = grouping_accuracy(&dataset.events, &dataset.templates());
        report.push(format!(
            "{}: {accuracy:.4} (published {published})",
            dataset.name
        ));
        assert!(accuracy >= published, "{}", report.join("\n"));
    }
    println!("{}", report.join("\n"));
}

/// The dictionary `collector compact` keeps, fed each dataset in 8 batches of 250 lines (as
/// hours are built): mining a batch again, from a dictionary loaded back from its templates,
/// gives the same ids and no new template (a rerun or a second compactor changes nothing), and
/// ids group lines as well as the miner's final templates do, within a point.
#[test]
fn dictionary_ids_are_stable_across_batches_and_reruns_and_group_like_the_miner() {
    let datasets = loghub::load(&loghub::default_dir()).unwrap_or_else(|error| panic!("{error}"));
    let mut report = Vec::new();
    for dataset in &datasets {
        let mut dictionary = Dictionary::new(dataset.settings.clone());
        let mut ids = Vec::new();
        for batch in dataset.contents.chunks(250) {
            let lines: Vec<&str> = batch.iter().map(String::as_str).collect();
            let given = dictionary.assign(&lines);
            let mut loaded = Dictionary::new(dataset.settings.clone());
            for (id, template) in dictionary.templates() {
                loaded.insert(id, &template);
            }
            assert_eq!(loaded.assign(&lines), given, "{}", dataset.name);
            assert_eq!(
                loaded.templates().collect::<Vec<_>>(),
                dictionary.templates().collect::<Vec<_>>(),
                "{}",
                dataset.name
            );
            ids.extend(given);
        }
        assert!(ids.iter().all(Option::is_some), "{}", dataset.name);
        let by_ids = grouping_accuracy(&dataset.events, &ids);
        let by_miner = grouping_accuracy(&dataset.events, &dataset.templates());
        report.push(format!(
            "{}: ids {by_ids:.4}, miner {by_miner:.4}",
            dataset.name
        ));
        assert!(by_ids >= by_miner - 0.01, "{}", report.join("\n"));
    }
    println!("{}", report.join("\n"));
}
