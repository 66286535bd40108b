//! Railway's ids as distinct types, so a service id can never be passed where an environment
//! id is expected.
//!
//! Railway's ids are opaque strings (UUIDs on the live API). Every function of this crate that
//! takes several of them takes them in one order: project, environment, service, then the
//! rest.

macro_rules! railway_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// An id as Railway gave it.
            pub fn new(id: impl Into<String>) -> Self {
                Self(id.into())
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The id as owned text.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

railway_id!(
    /// A workspace (formerly "team"): where projects are created.
    WorkspaceId
);
railway_id!(
    /// A project.
    ProjectId
);
railway_id!(
    /// An environment of a project.
    EnvironmentId
);
railway_id!(
    /// A service of a project.
    ServiceId
);
railway_id!(
    /// A deployment of a service in an environment.
    DeploymentId
);
railway_id!(
    /// A volume.
    VolumeId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_keep_their_text_and_print_it() {
        let id = ProjectId::new("prj-1");
        assert_eq!(id.as_str(), "prj-1");
        assert_eq!(id.to_string(), "prj-1");
        assert_eq!(id.clone().into_string(), "prj-1");
    }
}
