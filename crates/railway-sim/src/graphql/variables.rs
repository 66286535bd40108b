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

/// `Query`'s fields about variables.
#[derive(Default)]
pub(super) struct VariablesQuery;

#[Object]
impl VariablesQuery {
    // A service's variables as set; the simulator renders no references, so `unrendered`
    // changes nothing.
    async fn variables(
        &self,
        ctx: &Context<'_>,
        environment_id: String,
        project_id: String,
        service_id: Option<String>,
        unrendered: Option<bool>,
    ) -> Result<EnvironmentVariables> {
        let _ = unrendered;
        let w = world(ctx);
        w.project_visible(token(ctx), &project_id)?;
        w.check_environment(&project_id, &environment_id)?;
        let Some(service_id) = service_id else {
            return Ok(EnvironmentVariables::default());
        };
        let service = w.live_service(&service_id)?;
        if service.project_id != project_id {
            return Err(crate::world::Refusal::not_found("Service").into());
        }
        Ok(EnvironmentVariables(
            service
                .instances
                .get(&environment_id)
                .map(|i| i.variables.clone())
                .unwrap_or_default(),
        ))
    }
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
