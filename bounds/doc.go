// Package bounds is the one layer every front door takes its limits from,
// so that no request, stream or connection holds memory that a client, a
// sandbox or a stalled reader chose:
//   - a route's Class says how much of a body it reads and how;
//   - a Budget is a number of bytes shared by all requests, with a share
//     per key: buffered answers (a command's output, an MCP tool's result)
//     and bodies read whole reserve from one before they hold anything;
//   - a Gate caps what is in flight per key, per sandbox and per anonymous
//     port, answering 429 past it;
//   - a Writer and a Body give every write to a client and every read of a
//     body a deadline, so a client that stops reading (or sending) is cut
//     instead of pinning what was meant for it.
//
// A request's Scope carries these from the route's middleware through the
// front door to the domain calls; everything a scope holds is given back
// when its request ends.
package bounds
