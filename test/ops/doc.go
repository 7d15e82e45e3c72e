// Package ops tests sluice run as a service, against the real servers
// `make test` starts: the HTTP API with its CORS policy and tokens, reads
// from a non-loopback address, /metrics during a real sync, a disk alert on
// a small tmpfs with a webhook, the throttle under source stress, the
// protect_source abort, the dashboard in headless Chromium, and the error
// log: valid JSON with a code and context, and never a password.
package ops
