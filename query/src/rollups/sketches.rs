//! The aggregate functions a percentile answered from the rollups is planned with
//! (`rollups/`): the latency sketches of the rollup's hours merged (`sketch_union`), a sketch
//! of the raw rows' latencies for the rest (`sketch_of`), and the quantile of both merged
//! (`sketch_quantile`). The sketches are the rollups' own (`warm_table::rollup::sketch`), so the
//! answer is within its stated relative error of the exact value at that rank.

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type};
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Signature, TypeSignature, Volatility,
};
use std::sync::Arc;
use warm_table::rollup::sketch::{self, DDSketch};

/// What a sketch function does with its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Role {
    /// Numbers -> their sketch.
    Of,
    /// Sketches -> their merge.
    Union,
    /// Sketches and a quantile -> the quantile of their merge.
    Quantile,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct SketchFunction {
    role: Role,
    signature: Signature,
}

/// `sketch_of(number)`: the sketch of a column's non-null values.
pub(crate) fn sketch_of() -> AggregateUDF {
    function(Role::Of, TypeSignature::Numeric(1))
}

/// `sketch_union(sketch)`: stored sketches merged.
pub(crate) fn sketch_union() -> AggregateUDF {
    // Any binary type (the Delta provider hands binaries over as views): cast when read.
    function(Role::Union, TypeSignature::Any(1))
}

/// `sketch_quantile(sketch, q)`: the `q` quantile of the sketches merged.
pub(crate) fn sketch_quantile() -> AggregateUDF {
    function(Role::Quantile, TypeSignature::Any(2))
}

fn function(role: Role, signature: TypeSignature) -> AggregateUDF {
    AggregateUDF::from(SketchFunction {
        role,
        signature: Signature::new(signature, Volatility::Immutable),
    })
}

impl AggregateUDFImpl for SketchFunction {
    fn name(&self) -> &str {
        match self.role {
            Role::Of => "sketch_of",
            Role::Union => "sketch_union",
            Role::Quantile => "sketch_quantile",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(match self.role {
            Role::Quantile => DataType::Float64,
            Role::Of | Role::Union => DataType::Binary,
        })
    }

    fn accumulator(&self, _: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(SketchAccumulator {
            role: self.role,
            sketch: sketch::new(),
            quantile: None,
        }))
    }

    fn state_fields(&self, _: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![
            Arc::new(Field::new("sketch", DataType::Binary, true)),
            Arc::new(Field::new("quantile", DataType::Float64, true)),
        ])
    }
}

#[derive(Clone)]
struct SketchAccumulator {
    role: Role,
    sketch: DDSketch,
    quantile: Option<f64>,
}

impl std::fmt::Debug for SketchAccumulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SketchAccumulator")
            .field("role", &self.role)
            .field("count", &self.sketch.count())
            .finish()
    }
}

fn external(error: anyhow::Error) -> datafusion::error::DataFusionError {
    datafusion::error::DataFusionError::Execution(format!("{error:#}"))
}

impl SketchAccumulator {
    fn merge_sketches(&mut self, sketches: &ArrayRef) -> Result<()> {
        let sketches = cast(sketches, &DataType::Binary)?;
        let sketches = sketches.as_binary::<i32>();
        for row in 0..sketches.len() {
            if !sketches.is_null(row) {
                let other = sketch::from_bytes(sketches.value(row)).map_err(external)?;
                sketch::merge(&mut self.sketch, &other).map_err(external)?;
            }
        }
        Ok(())
    }

    fn take_quantile(&mut self, quantiles: &ArrayRef) -> Result<()> {
        let quantiles = cast(quantiles, &DataType::Float64)?;
        let quantiles = quantiles.as_primitive::<Float64Type>();
        if let Some(q) = (0..quantiles.len())
            .find(|row| !quantiles.is_null(*row))
            .map(|row| quantiles.value(row))
        {
            if !(0.0..=1.0).contains(&q) {
                return exec_err!("a percentile must be between 0 and 1, not {q}");
            }
            self.quantile = Some(q);
        }
        Ok(())
    }
}

impl Accumulator for SketchAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        match self.role {
            Role::Of => {
                let numbers = cast(&values[0], &DataType::Float64)?;
                let numbers = numbers.as_primitive::<Float64Type>();
                for row in 0..numbers.len() {
                    if !numbers.is_null(row) {
                        self.sketch.add(numbers.value(row));
                    }
                }
                Ok(())
            }
            Role::Union => self.merge_sketches(&values[0]),
            Role::Quantile => {
                self.merge_sketches(&values[0])?;
                self.take_quantile(&values[1])
            }
        }
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        match self.role {
            Role::Of | Role::Union => Ok(ScalarValue::Binary(if self.sketch.count() == 0 {
                None
            } else {
                Some(sketch::to_bytes(&self.sketch).map_err(external)?)
            })),
            Role::Quantile => {
                let Some(q) = self.quantile else {
                    return Ok(ScalarValue::Float64(None));
                };
                Ok(ScalarValue::Float64(
                    sketch::quantile(&self.sketch, q).map_err(external)?,
                ))
            }
        }
    }

    fn size(&self) -> usize {
        // The bins: 8 bytes each, at most the sketch's bound.
        std::mem::size_of_val(self) + self.sketch.length() * 8
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![
            ScalarValue::Binary(Some(sketch::to_bytes(&self.sketch).map_err(external)?)),
            ScalarValue::Float64(self.quantile),
        ])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.merge_sketches(&states[0])?;
        self.take_quantile(&states[1])
    }
}
