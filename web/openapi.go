package web

import (
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"
)

var pathParam = regexp.MustCompile(`:([a-z]+)`)

// openAPIDoc describes the JSON API as OpenAPI 3.1, built from the same
// table that registers the routes.
func (s *Server) openAPIDoc() map[string]any {
	errorResp := map[string]any{
		"description": "an error, with a message saying what was wrong",
		"content":     map[string]any{"application/json": map[string]any{"schema": map[string]any{"$ref": "#/components/schemas/Error"}}},
	}
	paths := map[string]any{}
	for _, r := range s.apiTable() {
		p := pathParam.ReplaceAllString(r.path, "{$1}")
		item, _ := paths[p].(map[string]any)
		if item == nil {
			item = map[string]any{}
			paths[p] = item
		}
		var params []any
		for _, m := range pathParam.FindAllStringSubmatch(r.path, -1) {
			params = append(params, map[string]any{"name": m[1], "in": "path", "required": true, "schema": map[string]any{"type": "string"}})
		}
		ok := map[string]any{"description": r.result}
		if r.result == "" {
			ok["description"] = "done"
		}
		op := map[string]any{
			"summary":     r.summary,
			"operationId": strings.ToLower(r.method) + strings.NewReplacer("/", "_", ":", "", "{", "", "}", "").Replace(r.path),
			"security":    []any{map[string]any{"bearer": []any{}}},
			"responses": map[string]any{
				strconv.Itoa(r.status): ok,
				"default":              errorResp,
			},
		}
		if r.admin {
			op["description"] = "Admins only."
		}
		if len(params) > 0 {
			op["parameters"] = params
		}
		if r.body != nil {
			op["requestBody"] = map[string]any{"required": true, "content": map[string]any{"application/json": map[string]any{"schema": r.body}}}
		}
		item[strings.ToLower(r.method)] = op
	}
	return map[string]any{
		"openapi": "3.1.0",
		"info": map[string]any{
			"title":       "berth API",
			"version":     "1",
			"description": "The operations of berth's SSH command set, with the same permission rules. Authenticate with a personal API token from the dashboard's account page: Authorization: Bearer berth_…",
		},
		"servers": []any{map[string]any{"url": apiPrefix}},
		"paths":   paths,
		"components": map[string]any{
			"securitySchemes": map[string]any{"bearer": map[string]any{"type": "http", "scheme": "bearer"}},
			"schemas": map[string]any{
				"Error": map[string]any{"type": "object", "required": []string{"error", "status"}, "properties": map[string]any{
					"error":  map[string]any{"type": "string"},
					"status": map[string]any{"type": "integer"},
				}},
			},
		},
	}
}

func (s *Server) openAPI(c echo.Context) error {
	return c.JSON(http.StatusOK, s.openAPIDoc())
}
