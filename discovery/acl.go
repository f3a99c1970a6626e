package discovery

import (
	"errors"
	"log/slog"
	"net/http"

	"github.com/hashicorp/consul/api"
)

// ACLPolicyHint is what the log says when Consul's ACLs refuse latch's
// token or hide what it asks for: the rules the token's policy needs
// (README, "Consul ACLs").
const ACLPolicyHint = `consul.token needs a policy with service "<name>" { policy = "read" } for each service latch routes to ` +
	`(or service_prefix "" read) and node_prefix "" { policy = "read" }`

// denied reports whether err is Consul refusing the query's token (403:
// "ACL not found", "Permission denied"), which no retry will cure.
func denied(err error) bool {
	var se api.StatusError
	return errors.As(err, &se) && se.Code == http.StatusForbidden
}

// aclFilter logs when Consul's answers start (or stop) leaving out results
// the token may not read (X-Consul-Results-Filtered-By-ACLs). For a
// service's instances that is an error: a token without service:read on
// the service, or without node:read, gets an empty list with a 200, which
// would otherwise look like a service with no instances. For the catalog
// (routes from tags) it is news only: a token may be meant to see some
// services. One watch's own; not safe for concurrent use.
type aclFilter struct {
	on      bool
	catalog bool
}

func (f *aclFilter) note(log *slog.Logger, what string, filtered bool) {
	switch {
	case filtered && !f.on && f.catalog:
		log.Info("consul's catalog leaves out services the ACL token may not read: routes from tags cover the others",
			"watch", what)
	case filtered && !f.on:
		log.Error("consul left instances out of its answer for lack of ACL permission: the token may not read them",
			"watch", what, "fix", ACLPolicyHint)
	case !filtered && f.on:
		log.Info("consul answers in full again: the token reads everything asked for", "watch", what)
	}
	f.on = filtered
}
