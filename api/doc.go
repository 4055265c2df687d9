// Package api holds bothy's wire types (the JSON of REST requests and
// responses), its error envelope, and the Go client that bothy, the tests and users
// call it with. It imports nothing else of this module.
package api
