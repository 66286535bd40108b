//! End-to-end tests of the pool manager as an operator runs it: the real binary, a real
//! PostgreSQL and the Railway simulator. The tests live in `e2e/`.
