// Package kit is what the stand-ins under devstack/ would otherwise each
// write again: a queue of injected faults, a record of the calls they
// were asked, a ResponseWriter that remembers the status, a clock tests can
// move, random ids in the forms Azure uses, buffers that goroutines may
// share, and the child process a Node.js stand-in (the Service Bus broker,
// Azurite) runs in. It holds no stand-in's behaviour: each fake still
// answers in its own service's words (its error bodies, its headers, its
// fault kinds); kit is only the plumbing under them.
package kit
