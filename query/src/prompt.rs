//! Without a statement: an interactive prompt with history on a terminal (as datafusion-cli), or
//! the `;`-separated statements of standard input, each run in turn. A failing statement prints
//! its error and the session goes on; piped input exits non-zero if any statement failed.

use crate::cli::Format;
use datafusion::prelude::SessionContext;
use rustyline::DefaultEditor;
use rustyline::error::ReadlineError;
use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

const HELP: &str = "Statements end with ';' (one line or several). Table `logs`: DESCRIBE logs; \
SHOW COLUMNS FROM logs. \\q or quit to leave; Up/Down and Ctrl-R search the history.";

/// Runs the session; `Ok(false)` when piped statements failed.
pub(crate) async fn run(
    ctx: &SessionContext,
    format: Format,
    bytes_read: &Arc<AtomicU64>,
) -> anyhow::Result<bool> {
    if std::io::stdin().is_terminal() {
        interactive(ctx, format, bytes_read).await?;
        Ok(true)
    } else {
        let mut input = String::new();
        std::io::stdin().read_to_string(&mut input)?;
        let mut all_ok = true;
        for statement in split_statements(&input) {
            all_ok &= run_one(ctx, &statement, format, bytes_read).await;
        }
        Ok(all_ok)
    }
}

async fn run_one(
    ctx: &SessionContext,
    sql: &str,
    format: Format,
    bytes_read: &Arc<AtomicU64>,
) -> bool {
    let result = match crate::run::execute(ctx, sql, bytes_read).await {
        Ok(running) => crate::output::print::write(running.rows, format, None).await,
        Err(error) => Err(error),
    };
    match result {
        Ok(_rows) => true,
        Err(error) => {
            let error = match crate::table::damaged::diagnose(&format!("{error:#}")).await {
                Some(damage) => anyhow::anyhow!(damage),
                None => error,
            };
            eprintln!("query: {}", crate::user_message(&error));
            false
        }
    }
}

async fn interactive(
    ctx: &SessionContext,
    format: Format,
    bytes_read: &Arc<AtomicU64>,
) -> anyhow::Result<()> {
    let mut editor = DefaultEditor::new()?;
    let history = history_file();
    if let Some(dir) = history.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let _ = editor.load_history(&history);
    eprintln!("query: SQL over table `logs`. {HELP}");
    let mut pending = String::new();
    loop {
        let prompt = if pending.is_empty() {
            "query> "
        } else {
            "    -> "
        };
        match editor.readline(prompt) {
            Ok(line) => {
                let trimmed = line.trim();
                if pending.is_empty() {
                    match trimmed {
                        "" => continue,
                        "\\q" | "quit" | "exit" => break,
                        "help" | "\\?" => {
                            eprintln!("{HELP}");
                            continue;
                        }
                        _ => {}
                    }
                }
                pending.push_str(&line);
                pending.push('\n');
                if !ends_statement(&pending) {
                    continue;
                }
                let statement = std::mem::take(&mut pending);
                let _ = editor.add_history_entry(statement.trim());
                for sql in split_statements(&statement) {
                    run_one(ctx, &sql, format, bytes_read).await;
                }
            }
            // Ctrl-C drops the statement being typed; Ctrl-D leaves.
            Err(ReadlineError::Interrupted) => pending.clear(),
            Err(ReadlineError::Eof) => break,
            Err(error) => return Err(error.into()),
        }
    }
    editor.save_history(&history)?;
    Ok(())
}

/// `QUERY_HISTORY`, else `$XDG_STATE_HOME/imds-query/history` (or `~/.local/state/...`).
pub(crate) fn history_file() -> PathBuf {
    if let Some(path) = std::env::var_os("QUERY_HISTORY") {
        return PathBuf::from(path);
    }
    std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(std::env::temp_dir)
        .join("imds-query/history")
}

/// Whether `text` is complete: it ends with a `;` outside quotes and holds a statement.
fn ends_statement(text: &str) -> bool {
    let (complete, rest) = scan(text);
    !complete.is_empty() && rest.trim().is_empty()
}

/// Splits on `;` outside single and double quotes; drops empty statements. What follows the last
/// `;` counts as a statement too (piped input need not end with one).
pub(crate) fn split_statements(text: &str) -> Vec<String> {
    let (mut statements, rest) = scan(text);
    statements.push(rest);
    statements.retain(|s| !s.is_empty());
    statements
}

/// The trimmed, non-empty statements ended by a `;` outside quotes, and the trimmed text after
/// the last such `;` (a statement still being typed, or an open quote).
fn scan(text: &str) -> (Vec<String>, String) {
    let mut statements = Vec::new();
    let mut current = String::new();
    let mut quote = None;
    for c in text.chars() {
        match (quote, c) {
            (None, ';') => {
                let statement = std::mem::take(&mut current).trim().to_owned();
                if !statement.is_empty() {
                    statements.push(statement);
                }
                continue;
            }
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            _ => {}
        }
        current.push(c);
    }
    (statements, current.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_split_on_semicolons_outside_quotes() {
        assert_eq!(
            split_statements("SELECT 1; SELECT ';' AS x;\n\n SELECT \"a;b\" FROM t"),
            ["SELECT 1", "SELECT ';' AS x", "SELECT \"a;b\" FROM t"]
        );
        assert!(ends_statement("SELECT 1;"));
        assert!(!ends_statement("SELECT ';"));
        assert!(!ends_statement("SELECT 1"));
    }
}
