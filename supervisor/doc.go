// Package supervisor owns who may call bothy: API keys, stored only as
// hashes, with one bootstrap admin key. (Request logs, metering, rate limits and
// quotas join it as those issues land.)
package supervisor
