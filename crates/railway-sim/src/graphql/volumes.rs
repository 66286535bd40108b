//! Volumes: a project's volumes, `volumeCreate` and `volumeDelete`.

use async_graphql::{Context, ID, InputObject, Object, SimpleObject};
use tokio::time::Instant;

use super::{Result, token, world};

#[derive(SimpleObject)]
pub(super) struct ProjectVolumesConnection {
    pub(super) edges: Vec<ProjectVolumesConnectionEdge>,
}

#[derive(SimpleObject)]
pub(super) struct ProjectVolumesConnectionEdge {
    pub(super) node: Volume,
}

#[derive(SimpleObject)]
#[graphql(complex)]
pub(super) struct Volume {
    pub(super) id: ID,
    pub(super) name: String,
    #[graphql(skip)]
    pub(super) volume_instances: VolumeVolumeInstancesConnection,
}

impl Volume {
    /// A volume of the world, with its one instance.
    pub(super) fn of(v: &crate::world::Volume) -> Self {
        Self {
            id: ID(v.id.clone()),
            name: v.name.clone(),
            volume_instances: VolumeVolumeInstancesConnection {
                edges: vec![VolumeVolumeInstancesConnectionEdge {
                    node: VolumeInstance {
                        environment_id: v.environment_id.clone(),
                        mount_path: v.mount_path.clone(),
                        service_id: v.service_id.clone(),
                    },
                }],
            },
        }
    }
}

#[async_graphql::ComplexObject]
impl Volume {
    #[allow(unused_variables)]
    async fn volume_instances(
        &self,
        after: Option<String>,
        before: Option<String>,
        first: Option<i32>,
        last: Option<i32>,
    ) -> VolumeVolumeInstancesConnection {
        self.volume_instances.clone()
    }
}

#[derive(SimpleObject, Clone)]
pub(super) struct VolumeVolumeInstancesConnection {
    pub(super) edges: Vec<VolumeVolumeInstancesConnectionEdge>,
}

#[derive(SimpleObject, Clone)]
pub(super) struct VolumeVolumeInstancesConnectionEdge {
    pub(super) node: VolumeInstance,
}

#[derive(SimpleObject, Clone)]
pub(super) struct VolumeInstance {
    pub(super) environment_id: String,
    pub(super) mount_path: String,
    pub(super) service_id: Option<String>,
}

#[derive(InputObject)]
pub(super) struct VolumeCreateInput {
    pub(super) environment_id: Option<String>,
    pub(super) mount_path: String,
    pub(super) project_id: String,
    pub(super) service_id: Option<String>,
}

/// `Mutation`'s fields about volumes.
#[derive(Default)]
pub(super) struct VolumesMutation;

#[Object]
impl VolumesMutation {
    async fn volume_create(&self, ctx: &Context<'_>, input: VolumeCreateInput) -> Result<Volume> {
        let (id, name) = world(ctx).create_volume(
            token(ctx),
            &input.project_id,
            input.environment_id,
            input.service_id.clone(),
            input.mount_path,
            Instant::now(),
        )?;
        Ok(Volume {
            id: ID(id),
            name,
            volume_instances: VolumeVolumeInstancesConnection { edges: Vec::new() },
        })
    }

    async fn volume_delete(&self, ctx: &Context<'_>, volume_id: String) -> Result<bool> {
        world(ctx).delete_volume(token(ctx), &volume_id)?;
        Ok(true)
    }
}
