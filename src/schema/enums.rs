//! The closed vocabularies of the unified event, each with its wire names in one place

use serde::{Deserialize, Serialize};

macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $wire:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $(#[serde(rename = $wire)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $wire),+ }
            }

            pub fn parse(s: &str) -> Option<$name> {
                match s { $($wire => Some($name::$variant),)+ _ => None }
            }

            /// The wire names joined for error messages: `a, b, c`.
            pub fn expected() -> String {
                [$($wire),+].join(", ")
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

wire_enum!(
    /// What area of security the event belongs to.
    Category {
        Authentication => "authentication",
        Authorization => "authorization",
        UserManagement => "user_management",
        Configuration => "configuration",
        DataAccess => "data_access",
        DataChange => "data_change",
        System => "system",
        Other => "other",
    }
);

wire_enum!(
    /// The verb of the event, vendor-neutral.
    Action {
        Create => "create",
        Read => "read",
        Update => "update",
        Delete => "delete",
        Login => "login",
        Logout => "logout",
        Export => "export",
        Import => "import",
        Grant => "grant",
        Revoke => "revoke",
        Execute => "execute",
        Other => "other",
    }
);

wire_enum!(
    Outcome {
        Success => "success",
        Failure => "failure",
        Unknown => "unknown",
    }
);

wire_enum!(
    ActorType {
        User => "user",
        Service => "service",
        ApiKey => "api_key",
        System => "system",
        Unknown => "unknown",
    }
);

wire_enum!(
    Severity {
        Info => "info",
        Low => "low",
        Medium => "medium",
        High => "high",
    }
);
