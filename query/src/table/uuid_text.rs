//! `uuid_text(id)`: a 16-byte id column as the hyphenated lower-case text it was in the log line.
//! Table `logs` shows `id` and `request_id` through it (`table/mod.rs`), so SQL reads, prints and
//! compares ids as text (`WHERE request_id = '4fa4fc1c-...'`) while the files keep 16 bytes a
//! value.

use datafusion::arrow::array::{Array, ArrayRef, AsArray, FixedSizeBinaryArray, StringBuilder};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{ScalarValue, exec_err};
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use logrecord::Uuid;
use std::sync::Arc;

#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct UuidText {
    signature: Signature,
}

/// The function, to call in a logical plan.
pub(crate) fn udf() -> Arc<ScalarUDF> {
    Arc::new(ScalarUDF::new_from_impl(UuidText {
        signature: Signature::exact(vec![logrecord::UUID], Volatility::Immutable),
    }))
}

fn text(bytes: &[u8]) -> Option<String> {
    Uuid::from_slice(bytes).ok().map(|id| id.to_string())
}

fn texts(ids: &FixedSizeBinaryArray) -> ArrayRef {
    let mut out = StringBuilder::with_capacity(ids.len(), ids.len() * 36);
    let mut buffer = Uuid::encode_buffer();
    for row in 0..ids.len() {
        match Uuid::from_slice(ids.value(row)) {
            Ok(id) if ids.is_valid(row) => {
                out.append_value(id.hyphenated().encode_lower(&mut buffer));
            }
            _ => out.append_null(),
        }
    }
    Arc::new(out.finish())
}

impl ScalarUDFImpl for UuidText {
    fn name(&self) -> &str {
        "uuid_text"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        match args.args.as_slice() {
            [ColumnarValue::Array(ids)] => match ids.as_fixed_size_binary_opt() {
                Some(ids) => Ok(ColumnarValue::Array(texts(ids))),
                None => exec_err!("uuid_text takes 16-byte ids, not {}", ids.data_type()),
            },
            [ColumnarValue::Scalar(ScalarValue::FixedSizeBinary(16, id))] => Ok(
                ColumnarValue::Scalar(ScalarValue::Utf8(id.as_deref().and_then(text))),
            ),
            other => exec_err!("uuid_text takes one 16-byte id, got {other:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::Field;
    use datafusion::config::ConfigOptions;

    #[test]
    fn ids_print_as_the_text_of_the_line_and_nulls_stay_null() {
        let id = Uuid::from_u128(0x01930000_0000_7000_8000_00000000000a);
        let ids = FixedSizeBinaryArray::try_from_sparse_iter_with_size(
            [Some(id.as_bytes().to_vec()), None].into_iter(),
            16,
        )
        .unwrap();
        let args = ScalarFunctionArgs {
            args: vec![ColumnarValue::Array(Arc::new(ids))],
            arg_fields: vec![Arc::new(Field::new("id", logrecord::UUID, true))],
            number_rows: 2,
            return_field: Arc::new(Field::new("id", DataType::Utf8, true)),
            config_options: Arc::new(ConfigOptions::default()),
        };
        let ColumnarValue::Array(out) = udf().invoke_with_args(args).unwrap() else {
            panic!("an array in, an array out");
        };
        let out = out.as_string::<i32>();
        assert_eq!(out.value(0), "01930000-0000-7000-8000-00000000000a");
        assert!(out.is_null(1));
    }
}
