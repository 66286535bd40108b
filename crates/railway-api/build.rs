//! Registers the Railway schema subset with cynic, so operations are checked at compile time.
#![allow(clippy::expect_used)]
fn main() {
    println!("cargo:rerun-if-changed=../../schema/railway.graphql");
    cynic_codegen::register_schema("railway")
        .from_sdl_file("../../schema/railway.graphql")
        .expect("schema/railway.graphql is readable SDL")
        .as_default()
        .expect("register the Railway schema");
}
