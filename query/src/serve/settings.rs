//! `current_setting(name)`: PostgreSQL's read of a server setting, which clients' catalog
//! queries call (Grafana's table and column lists use `current_setting('search_path')`) and
//! which datafusion-postgres does not provide. Answers the server's values; a session's own
//! `SET` (e.g. `application_name`) is not reflected, the server-wide value is.

use datafusion::arrow::array::{Array, StringArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};
use std::sync::Arc;
use std::time::Duration;

/// The settings clients ask for, as PostgreSQL 16 names and formats them.
fn value(name: &str, statement_timeout: Duration) -> Option<String> {
    let fixed = match name.to_ascii_lowercase().as_str() {
        "server_version" => "16.6",
        "server_version_num" => "160006",
        "search_path" => "public",
        "standard_conforming_strings" => "on",
        "client_encoding" | "server_encoding" => "UTF8",
        "timezone" => "UTC",
        "datestyle" => "ISO, YMD",
        "intervalstyle" => "postgres",
        "integer_datetimes" => "on",
        "default_transaction_read_only" | "transaction_read_only" => "on",
        "is_superuser" => "off",
        "max_identifier_length" => "63",
        "max_index_keys" => "32",
        "statement_timeout" => return Some(statement_timeout.as_millis().to_string()),
        _ => return None,
    };
    Some(fixed.to_owned())
}

fn lookup(name: Option<&str>, statement_timeout: Duration) -> Result<Option<String>> {
    let Some(name) = name else { return Ok(None) };
    value(name, statement_timeout).map(Some).ok_or_else(|| {
        DataFusionError::Plan(format!("unrecognized configuration parameter \"{name}\""))
    })
}

/// The UDF, answering `statement_timeout` with the server's `--statement-timeout`.
pub(crate) fn current_setting(statement_timeout: Duration) -> ScalarUDF {
    create_udf(
        "current_setting",
        vec![DataType::Utf8],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(move |args: &[ColumnarValue]| match args {
            [ColumnarValue::Scalar(name)] => {
                let name = match name {
                    ScalarValue::Utf8(name)
                    | ScalarValue::Utf8View(name)
                    | ScalarValue::LargeUtf8(name) => name.as_deref(),
                    _ => None,
                };
                Ok(ColumnarValue::Scalar(ScalarValue::Utf8(lookup(
                    name,
                    statement_timeout,
                )?)))
            }
            [ColumnarValue::Array(names)] => {
                let names = names
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .ok_or_else(|| DataFusionError::Plan("current_setting takes text".into()))?;
                let values = names
                    .iter()
                    .map(|name| lookup(name, statement_timeout))
                    .collect::<Result<StringArray>>()?;
                Ok(ColumnarValue::Array(Arc::new(values)))
            }
            _ => Err(DataFusionError::Plan(
                "current_setting takes one argument: the setting's name".into(),
            )),
        }),
    )
}
