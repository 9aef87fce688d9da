//! A Prometheus text page, parsed into series and values.

use std::collections::BTreeMap;
use std::net::SocketAddr;

/// A parsed Prometheus text page.
#[derive(Debug)]
pub struct Scrape {
    /// The page as served.
    pub text: String,
    /// Every series, spelled as exposed (`name{a="x",b="y"}`), and its value.
    pub series: BTreeMap<String, f64>,
}

impl Scrape {
    /// Fetches and parses `http://<addr>/metrics`.
    pub async fn fetch(addr: SocketAddr) -> Scrape {
        let text = crate::http::client()
            .get(format!("http://{addr}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        Scrape::parse(&text)
    }

    /// Parses a page.
    pub fn parse(text: &str) -> Scrape {
        let series = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| {
                let (name, value) = l.rsplit_once(' ').unwrap();
                (name.to_owned(), value.parse::<f64>().unwrap())
            })
            .collect();
        Scrape {
            text: text.to_owned(),
            series,
        }
    }

    /// The value of one series, spelled as exposed (`name{a="x",b="y"}`); 0 when absent.
    pub fn value(&self, series: &str) -> f64 {
        self.series.get(series).copied().unwrap_or(0.0)
    }

    /// The sum over every series of `name` whose labels contain all of `labels`.
    pub fn sum(&self, name: &str, labels: &[&str]) -> f64 {
        self.series
            .iter()
            .filter(|(series, _)| {
                let (n, rest) = series.split_once('{').unwrap_or((series.as_str(), ""));
                n == name && labels.iter().all(|l| rest.contains(l))
            })
            .map(|(_, v)| v)
            .sum()
    }
}
