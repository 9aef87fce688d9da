//! The statement policy, one for every way a statement comes in (the CLI, the prompt, `query
//! serve`, `--cluster`): read-only, within bounds, each refusal with its SQLSTATE. Applied once
//! per statement: [`check_text`] on the text before it is parsed, then [`plan`] checks the parsed
//! statement, plans it and checks the plan.
//!
//! DDL, DML (COPY included) and SET are refused by a check of the plan before anything runs. Deep
//! expressions are refused before they are planned: DataFusion parses, plans and optimizes
//! expressions recursively, and `SELECT 1+1+...` of 10,000 terms overflowed the stack (50,000
//! still did on a 512 MiB stack). A statement with more than [`MAX_OPERATORS`] operators or
//! parentheses nested deeper than [`MAX_PARENTHESES`] is refused from its tokens (no tree is
//! built), and an expression of the plan nested deeper than [`MAX_EXPRESSION_DEPTH`] before the
//! optimizer walks it. Memory is bounded by the session's memory pool (`lib.rs`).

use anyhow::bail;
use datafusion::common::DataFusionError;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::execution::SessionState;
use datafusion::execution::context::SQLOptions;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    Expr as SqlExpr, Statement, TableFactor, Visit, Visitor, visit_expressions,
};
use std::ops::ControlFlow;

/// Deepest expression nesting accepted; real statements nest a few dozen levels at most.
pub(crate) const MAX_EXPRESSION_DEPTH: usize = 1000;
/// Longest statement accepted.
pub(crate) const MAX_STATEMENT_BYTES: usize = 1 << 20;
/// Most operators (arithmetic, comparison, AND, OR, ...) in one statement: each can be one level
/// of nesting. A long IN list has none.
pub(crate) const MAX_OPERATORS: usize = 1000;
/// Deepest nesting of parentheses in one statement.
pub(crate) const MAX_PARENTHESES: usize = 256;
/// Most query blocks (`SELECT`s: union branches, subqueries) in one statement. Planning time
/// grows faster than linearly with them: 10,000 `UNION ALL` branches took 70 s to plan, a
/// 500-way cross join of one-row subqueries 47 s, all of it before any limit on running applies.
pub(crate) const MAX_QUERY_BLOCKS: usize = 256;
/// Most relations (tables, subqueries, table functions: each FROM item and JOIN) in one statement.
pub(crate) const MAX_RELATIONS: usize = 64;

/// Refuses, from its tokens alone, a statement that could nest deeper than the planner handles.
fn bounded_nesting(sql: &str) -> anyhow::Result<()> {
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::keywords::Keyword;
    use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
    // A statement that does not tokenize gets the parser's own error.
    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, sql).tokenize() else {
        return Ok(());
    };
    let (mut operators, mut open, mut deepest, mut blocks) = (0usize, 0usize, 0usize, 0usize);
    for token in &tokens {
        match token {
            Token::LParen => {
                open += 1;
                deepest = deepest.max(open);
            }
            Token::RParen => open = open.saturating_sub(1),
            Token::Plus
            | Token::Minus
            | Token::Mul
            | Token::Div
            | Token::Mod
            | Token::StringConcat
            | Token::Eq
            | Token::DoubleEq
            | Token::Neq
            | Token::Lt
            | Token::Gt
            | Token::LtEq
            | Token::GtEq
            | Token::Spaceship
            | Token::Caret
            | Token::Ampersand
            | Token::Pipe
            | Token::ShiftLeft
            | Token::ShiftRight => operators += 1,
            Token::Word(word)
                if matches!(
                    word.keyword,
                    Keyword::AND | Keyword::OR | Keyword::NOT | Keyword::LIKE | Keyword::ILIKE
                ) =>
            {
                operators += 1
            }
            Token::Word(word) if word.keyword == Keyword::SELECT => blocks += 1,
            _ => {}
        }
    }
    if operators > MAX_OPERATORS {
        bail!("the statement has {operators} operators; the limit is {MAX_OPERATORS}");
    }
    if deepest > MAX_PARENTHESES {
        bail!("parentheses are nested {deepest} deep; the limit is {MAX_PARENTHESES}");
    }
    if blocks > MAX_QUERY_BLOCKS {
        bail!(
            "the statement has {blocks} SELECTs (union branches and subqueries); the limit is {MAX_QUERY_BLOCKS}"
        );
    }
    Ok(())
}

/// Why a statement was refused before it ran; the server maps each to its SQLSTATE.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refused {
    /// It would change something (DDL, DML, COPY, SET).
    #[error("refused: query is read-only (no CREATE, DROP, INSERT, COPY or SET): {0}")]
    ReadOnly(String),
    /// It is longer or nested deeper than the planner is allowed to handle.
    #[error("refused: {0}")]
    TooLarge(String),
    /// It calls a function of this project the wrong way (DataFusion's own message would be
    /// "Invalid function").
    #[error("{0}")]
    Misused(String),
}

/// Counts the relations of a statement (each FROM item and each JOIN's relation).
#[derive(Default)]
struct Relations(usize);

impl Visitor for Relations {
    type Break = ();

    fn pre_visit_table_factor(&mut self, _: &TableFactor) -> ControlFlow<()> {
        self.0 += 1;
        ControlFlow::Continue(())
    }
}

/// Refuses a statement with more relations than [`MAX_RELATIONS`], and `log_pattern()` called
/// without `OVER`: it is a window function (`log_pattern.rs`), and DataFusion would only answer
/// "Invalid function 'log_pattern'".
pub(crate) fn check_statement(statement: &Statement) -> Result<(), Refused> {
    let mut relations = Relations::default();
    let _ = statement.visit(&mut relations);
    if relations.0 > MAX_RELATIONS {
        return Err(Refused::TooLarge(format!(
            "the statement reads {} relations (tables, subqueries, joins); the limit is {MAX_RELATIONS}",
            relations.0
        )));
    }
    let misused = visit_expressions(statement, |expr| match expr {
        SqlExpr::Function(function)
            if function.over.is_none()
                && function
                    .name
                    .0
                    .last()
                    .and_then(|part| part.as_ident())
                    .is_some_and(|name| name.value.eq_ignore_ascii_case("log_pattern")) =>
        {
            ControlFlow::Break(())
        }
        _ => ControlFlow::Continue(()),
    });
    if misused.is_break() {
        return Err(Refused::Misused(
            r#"log_pattern() is a window function: it mines templates over a set of rows, so write e.g. log_pattern(message) OVER (ORDER BY "timestamp", machine, seq), or OVER (PARTITION BY cluster ORDER BY ...)"#
                .to_owned(),
        ));
    }
    Ok(())
}

/// Refuses, before parsing or planning, a statement too long or nested too deep.
pub(crate) fn check_text(sql: &str) -> Result<(), Refused> {
    if sql.len() > MAX_STATEMENT_BYTES {
        return Err(Refused::TooLarge(format!(
            "the statement is {} bytes; the limit is {MAX_STATEMENT_BYTES}",
            sql.len()
        )));
    }
    bounded_nesting(sql).map_err(|error| Refused::TooLarge(error.to_string()))
}

/// Refuses a plan that would change something, whose expressions nest too deep, or that joins
/// `logs` with itself without an equality (see [`unbounded_join`]): decided on the plan, not on
/// error text. Shared by the CLI and `query serve`.
pub(crate) fn check_plan(state: &SessionState, plan: &LogicalPlan) -> Result<(), Refused> {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
        .verify_plan(plan)
        .map_err(|error| Refused::ReadOnly(error.to_string()))?;
    let depth = expression_depth(plan).map_err(|error| Refused::TooLarge(error.to_string()))?;
    if depth > MAX_EXPRESSION_DEPTH {
        return Err(Refused::TooLarge(format!(
            "an expression is nested {depth} levels deep; the limit is {MAX_EXPRESSION_DEPTH}"
        )));
    }
    // The optimizer turns `FROM a, b WHERE a.k = b.k` into an equality join: only what is left
    // without one after it counts. A plan it cannot optimize gets its error when it runs.
    // On a cluster the join runs in the executors, within their own memory; the bound is this
    // process's.
    let on_cluster = state
        .config()
        .options()
        .extensions
        .get::<ballista_core::config::BallistaConfig>()
        .is_some();
    if !on_cluster
        && let Ok(optimized) = state.optimize(plan)
        && unbounded_join(&optimized)
    {
        return Err(Refused::TooLarge(
            "a join of logs with logs without an equality condition (a cross join, or a join on \
             an inequality) cannot be bounded by the memory limit: join on a column (a.machine = \
             b.machine), or read one side through a subquery with a LIMIT"
                .to_owned(),
        ));
    }
    Ok(())
}

/// Whether the plan joins two inputs that both read `logs` without an equality key. DataFusion
/// runs such a join as a nested loop that cannot spill, holding one side whole, and what its
/// output stages hold is not all in the memory pool: a ten-way cross join of `logs` grew to
/// 4.5 GB under a 1 GB limit and aborted. A side with a LIMIT is bounded and allowed.
fn unbounded_join(plan: &LogicalPlan) -> bool {
    let has = |side: &LogicalPlan, wanted: fn(&LogicalPlan) -> bool| {
        side.exists(|node| Ok(wanted(node))).unwrap_or(false)
    };
    let reads_logs_unbounded = |side: &LogicalPlan| {
        has(side, |node| {
            matches!(node, LogicalPlan::TableScan(scan)
                if scan.table_name.table() == crate::table::TABLE && scan.fetch.is_none())
        }) && !has(side, |node| matches!(node, LogicalPlan::Limit(_)))
    };
    plan.exists(|node| {
        Ok(matches!(node, LogicalPlan::Join(join)
            if join.on.is_empty()
                && reads_logs_unbounded(&join.left)
                && reads_logs_unbounded(&join.right)))
    })
    .unwrap_or(false)
}

impl Refused {
    /// The PostgreSQL SQLSTATE of the refusal, as `query serve` answers it.
    pub(crate) fn sqlstate(&self) -> &'static str {
        match self {
            Refused::ReadOnly(_) => "25006", // read_only_sql_transaction
            Refused::TooLarge(_) => "54001", // statement_too_complex
            Refused::Misused(_) => "42809",  // wrong_object_type
        }
    }
}

/// Why a parsed statement has no plan to run: the policy refused it, or the planner did.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NotPlanned {
    /// Refused by the policy.
    #[error(transparent)]
    Refused(#[from] Refused),
    /// Not a valid statement for the planner (unknown column, type error, ...).
    #[error("SQL error: {0}")]
    Invalid(DataFusionError),
}

/// Checks the parsed `statement`, plans it and checks the plan, then answers what it can from
/// the rollups (`rollups/`): what every caller runs, once.
/// (The text was checked by [`check_text`] before it was parsed.)
pub(crate) async fn plan(
    state: &SessionState,
    statement: DFStatement,
) -> Result<LogicalPlan, NotPlanned> {
    if let DFStatement::Statement(statement) = &statement {
        check_statement(statement)?;
    }
    let plan = state
        .statement_to_plan(statement)
        .await
        .map_err(NotPlanned::Invalid)?;
    check_plan(state, &plan)?;
    let rollups_on = crate::rollups::enabled(state);
    match state
        .config()
        .get_extension::<crate::rollups::RollupSource>()
    {
        Some(source) if rollups_on => crate::rollups::use_rollups(state, &source, plan)
            .await
            .map_err(NotPlanned::Invalid),
        _ => Ok(plan),
    }
}

/// The deepest expression nesting in the plan, measured without recursion over expressions (an
/// explicit stack), so that measuring cannot overflow where planning would.
fn expression_depth(plan: &LogicalPlan) -> anyhow::Result<usize> {
    let mut deepest = 0;
    plan.apply_with_subqueries(|node| {
        for expr in node.expressions() {
            let mut stack: Vec<(&Expr, usize)> = vec![(&expr, 1)];
            while let Some((expr, depth)) = stack.pop() {
                deepest = deepest.max(depth);
                if depth > MAX_EXPRESSION_DEPTH {
                    return Ok(TreeNodeRecursion::Stop);
                }
                expr.apply_children(|child| {
                    stack.push((child, depth + 1));
                    Ok(TreeNodeRecursion::Continue)
                })?;
            }
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(deepest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_is_bounded_from_the_tokens() {
        let chain = |n: usize| format!("SELECT {}", vec!["1"; n].join("+"));
        assert!(bounded_nesting(&chain(MAX_OPERATORS + 1)).is_ok());
        let error = check_text(&chain(MAX_OPERATORS + 2))
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "refused: the statement has 1001 operators; the limit is 1000"
        );
        let parens = format!("SELECT {}1{}", "(".repeat(300), ")".repeat(300));
        assert!(
            bounded_nesting(&parens)
                .unwrap_err()
                .to_string()
                .contains("nested 300 deep")
        );
        // A long IN list is wide, not deep.
        let in_list = format!(
            "SELECT * FROM logs WHERE machine IN ({})",
            vec!["'m'"; 10_000].join(",")
        );
        assert!(bounded_nesting(&in_list).is_ok());
        // Operators inside strings are not operators.
        assert!(bounded_nesting(&format!("SELECT '{}'", "+".repeat(5000))).is_ok());
    }

    #[test]
    fn plan_size_is_bounded_in_query_blocks_and_relations() {
        let unions = |n: usize| vec!["SELECT 1"; n].join(" UNION ALL ");
        assert!(check_text(&unions(MAX_QUERY_BLOCKS)).is_ok());
        assert_eq!(
            check_text(&unions(10_000)).unwrap_err().to_string(),
            "refused: the statement has 10000 SELECTs (union branches and subqueries); the limit is 256"
        );
        let relations = |n: usize| {
            let from: Vec<String> = (0..n).map(|i| format!("logs t{i}")).collect();
            format!("SELECT count(*) FROM {}", from.join(", "))
        };
        let parse = |sql: &str| {
            use datafusion::sql::sqlparser::{dialect::GenericDialect, parser::Parser};
            Parser::parse_sql(&GenericDialect {}, sql)
                .unwrap()
                .remove(0)
        };
        assert!(check_statement(&parse(&relations(MAX_RELATIONS))).is_ok());
        assert_eq!(
            check_statement(&parse(&relations(500)))
                .unwrap_err()
                .to_string(),
            "refused: the statement reads 500 relations (tables, subqueries, joins); the limit is 64"
        );
    }
}
