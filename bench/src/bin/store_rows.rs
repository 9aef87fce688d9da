//! `store_rows DIR|s3://BUCKET/PREFIX`: the number of rows in the warm store's Delta table (its
//! current version), and exit 1 if any id is there twice.

use clap::Parser;
use std::collections::HashSet;

/// Counts the rows of the warm store's Delta table; exit 1 if any id is there twice.
#[derive(Debug, Parser)]
#[command(name = "store_rows")]
struct Args {
    /// The table: a directory or s3://BUCKET/PREFIX.
    store: String,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    warm_table::register_storage();
    let url = warm_table::location(&args.store)?;
    let rows =
        tokio::runtime::Runtime::new()?.block_on(async { warm_table::read_records(&url).await })?;
    let ids: HashSet<_> = rows.iter().map(|r| r.id).collect();
    println!("{}", rows.len());
    if ids.len() != rows.len() {
        eprintln!(
            "store_rows: {} ids stored more than once",
            rows.len() - ids.len()
        );
        std::process::exit(1);
    }
    Ok(())
}
