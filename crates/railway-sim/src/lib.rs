//! A faithful stand-in for Railway, for tests, benchmarks and the local demo.
//!
//! `railway-sim` will own an in-memory Railway served over real HTTP (GraphQL with Railway's
//! types and fields), fake agents behind each domain, fake OpenRouter and AgentMail APIs,
//! latency, limits and fault injection, and an inspection API.
//!
//! Architecture invariant: never linked into the production binary.
