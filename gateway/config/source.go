package config

import (
	"fmt"
	"strconv"
	"strings"
)

// source is where a Config's fields came from, so that a validation error
// points at what the user wrote: the file and the line of the field, the
// flag or variable that set it, and a route by its index in the file. The
// route a -service flag adds is put before the file's routes, so without
// this the file's first route was reported as routes[1] (issue 29).
type source struct {
	file  string         // the YAML file read ("" if none)
	lines map[string]int // YAML path ("routes[0].sticky.ttl") → line in file
	// flagRoutes is how many routes flags put before the file's (0 or 1),
	// flagRoute how the user gave it ("-service web").
	flagRoutes int
	flagRoute  string
	// setBy maps a field's YAML path to the flag or variable that set it
	// over the file ("-listen", "LATCH_REDIS_URL").
	setBy map[string]string
}

// render formats one validation problem. Without a source (a Config built
// in code), it is "field: message".
func (s *source) render(field, msg string) string {
	if s == nil {
		return field + ": " + msg
	}
	if by := s.setter(field); by != "" {
		return by + ": " + field + ": " + msg
	}
	i, rest, isRoute := routeIndex(field)
	if isRoute && i < s.flagRoutes {
		if rest == "" {
			return s.flagRoute + ": " + msg
		}
		return s.flagRoute + ": " + rest + ": " + msg
	}
	if isRoute {
		field = fmt.Sprintf("routes[%d]", i-s.flagRoutes)
		if rest != "" {
			field += "." + rest
		}
	}
	if s.file == "" {
		return field + ": " + msg
	}
	if line := s.line(field); line > 0 {
		return fmt.Sprintf("%s: %s: %s (line %d)", s.file, field, msg, line)
	}
	return s.file + ": " + field + ": " + msg
}

// route names the route at index i of the validated config.
func (s *source) route(i int) string {
	if s == nil {
		return fmt.Sprintf("routes[%d]", i)
	}
	if i < s.flagRoutes {
		return s.flagRoute
	}
	return fmt.Sprintf("routes[%d]", i-s.flagRoutes)
}

// setter is the flag or variable that set field (or the list or section
// holding it), if any.
func (s *source) setter(field string) string {
	for f, by := range s.setBy {
		if field == f || strings.HasPrefix(field, f+".") || strings.HasPrefix(field, f+"[") {
			return by
		}
	}
	return ""
}

// line is the line of field in the file, or of the nearest enclosing
// field written there: a route's setting inherited from defaults is
// reported at the route's line. 0: not in the file.
func (s *source) line(field string) int {
	for field != "" {
		if l, ok := s.lines[field]; ok {
			return l
		}
		cut := max(strings.LastIndexByte(field, '.'), strings.LastIndexByte(field, '['))
		if cut <= 0 {
			return 0
		}
		field = field[:cut]
	}
	return 0
}

// routeIndex splits "routes[3].sticky.ttl" into 3 and "sticky.ttl".
func routeIndex(field string) (i int, rest string, ok bool) {
	after, found := strings.CutPrefix(field, "routes[")
	if !found {
		return 0, "", false
	}
	num, rest, found := strings.Cut(after, "]")
	if !found {
		return 0, "", false
	}
	i, err := strconv.Atoi(num)
	if err != nil {
		return 0, "", false
	}
	return i, strings.TrimPrefix(rest, "."), true
}
