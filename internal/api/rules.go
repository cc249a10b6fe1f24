package api

import (
	"errors"
	"net/http"

	"github.com/vigil-pam/vigil/internal/rules"
	"github.com/vigil-pam/vigil/internal/vault"
)

// RulesResponse answers GET /api/v1/rules.
type RulesResponse struct {
	Packs []rules.Pack `json:"packs"`
	// DefaultPacks apply to targets that enable none of their own.
	DefaultPacks []string `json:"default_packs"`
}

func (s *Server) listRules(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, RulesResponse{Packs: s.Rules.Packs(), DefaultPacks: append([]string{}, s.DefaultRulePacks...)})
}

// RuleTestRequest is the body of POST /api/v1/rules/test.
type RuleTestRequest struct {
	Text string `json:"text"`
	// Kind is command, output or sql; empty tries all three.
	Kind rules.Kind `json:"kind,omitempty"`
	// Packs are pack specs to test against; empty means every pack.
	Packs []string `json:"packs,omitempty"`
}

// RuleTestHit is one hit of a rule test.
type RuleTestHit struct {
	rules.Hit
	Kind rules.Kind `json:"kind"`
}

// testRules tells which rules a text would hit, and what Vigil would do.
func (s *Server) testRules(w http.ResponseWriter, r *http.Request) {
	var in RuleTestRequest
	if !decode(w, r, &in) {
		return
	}
	kinds := []rules.Kind{rules.KindCommand, rules.KindOutput, rules.KindSQL}
	switch in.Kind {
	case "":
	case rules.KindCommand, rules.KindOutput, rules.KindSQL:
		kinds = []rules.Kind{in.Kind}
	default:
		writeError(w, http.StatusBadRequest, "bad_request", "kind must be command, output or sql")
		return
	}
	packs := in.Packs
	if len(packs) == 0 {
		for _, p := range s.Rules.Packs() {
			packs = append(packs, p.Name)
		}
	}
	set, err := s.Rules.Set(packs)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	hits := []RuleTestHit{}
	for _, k := range kinds {
		for _, h := range set.Match(k, in.Text) {
			hits = append(hits, RuleTestHit{Hit: h, Kind: k})
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"hits": hits})
}

// TargetRulesRequest is the body of PUT /api/v1/targets/{name}/rules.
type TargetRulesRequest struct {
	// Packs are pack specs ("os-sensitive", "lateral-movement=pause");
	// empty means the server's default packs.
	Packs []string `json:"packs"`
}

// setTargetRules enables rule packs on a target; new sessions use them.
func (s *Server) setTargetRules(w http.ResponseWriter, r *http.Request) {
	var in TargetRulesRequest
	if !decode(w, r, &in) {
		return
	}
	if err := s.Rules.ValidateSpecs(in.Packs); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	name := r.PathValue("name")
	if _, err := s.Vault.Get(r.Context(), name); errors.Is(err, vault.ErrNotFound) {
		writeError(w, http.StatusNotFound, "not_found", "no such target")
		return
	}
	if !s.record(w, r, "target.rules", name, map[string]any{"packs": in.Packs}) {
		return
	}
	if err := s.Vault.SetRulePacks(r.Context(), name, in.Packs); err != nil {
		s.Log.Error("set rule packs", "err", err)
		writeError(w, http.StatusServiceUnavailable, "unavailable", "the rule packs could not be stored")
		return
	}
	t, err := s.Vault.Get(r.Context(), name)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "target unavailable")
		return
	}
	writeJSON(w, http.StatusOK, t)
}
