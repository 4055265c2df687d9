// Package wire is the protocol bothy and the bothy-agent speak over their
// channel, which both ends import: the handshake, the frames of a stream (a
// JSON request, data frames, a JSON result), the flow control every stream
// carries, the messages of each operation and their error codes, and the
// paths where bothy puts the agent in a container.
package wire
