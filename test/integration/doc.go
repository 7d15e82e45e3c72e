// Package integration holds end-to-end tests of the sluice binary against
// real PostgreSQL and MariaDB servers: the type matrix, config mappings, the
// Chinook sample database compared cell by cell with its official MySQL
// version, bad input and its exit codes, and verify/repair.
//
// Every test creates its own databases with testenv.NewPair, so the tests run
// in parallel; they are skipped with -short.
package integration
