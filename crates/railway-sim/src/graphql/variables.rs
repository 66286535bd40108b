//! Variables: the `EnvironmentVariables` scalar and `variableCollectionUpsert`.

use std::collections::BTreeMap;

use async_graphql::{
    Context, InputObject, InputValueError, InputValueResult, Object, Scalar, ScalarType, Value,
};
use tokio::time::Instant;

use super::{Result, token, world};

/// `EnvironmentVariables`: an object of names to string values.
#[derive(Debug, Clone, Default)]
pub struct EnvironmentVariables(
    /// Variable names to values.
    pub BTreeMap<String, String>,
);

#[Scalar(name = "EnvironmentVariables")]
impl ScalarType for EnvironmentVariables {
    fn parse(value: Value) -> InputValueResult<Self> {
        match value {
            Value::Object(map) => map
                .into_iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k.to_string(), s)),
                    other => Err(InputValueError::custom(format!(
                        "variable {k} must be a string, got {other}"
                    ))),
                })
                .collect::<std::result::Result<BTreeMap<_, _>, _>>()
                .map(EnvironmentVariables),
            other => Err(InputValueError::expected_type(other)),
        }
    }

    fn to_value(&self) -> Value {
        Value::Object(
            self.0
                .iter()
                .map(|(k, v)| (async_graphql::Name::new(k), Value::String(v.clone())))
                .collect(),
        )
    }
}

#[derive(InputObject)]
pub(super) struct VariableCollectionUpsertInput {
    pub(super) environment_id: String,
    pub(super) project_id: String,
    pub(super) replace: Option<bool>,
    pub(super) service_id: Option<String>,
    pub(super) skip_deploys: Option<bool>,
    pub(super) variables: EnvironmentVariables,
}

/// `Mutation`'s fields about variables.
#[derive(Default)]
pub(super) struct VariablesMutation;

#[Object]
impl VariablesMutation {
    async fn variable_collection_upsert(
        &self,
        ctx: &Context<'_>,
        input: VariableCollectionUpsertInput,
    ) -> Result<bool> {
        world(ctx).upsert_variables(
            token(ctx),
            &input.project_id,
            &input.environment_id,
            input.service_id,
            input.variables.0,
            input.replace.unwrap_or(false),
            input.skip_deploys.unwrap_or(false),
            Instant::now(),
        )?;
        Ok(true)
    }
}
