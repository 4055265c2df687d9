package server

import (
	"encoding/json"
	"net/http"
	"sort"
	"strings"
	"sync"

	"github.com/labstack/echo/v5"

	"github.com/bothy/bothy/api"
	"github.com/bothy/bothy/images"
)

func (s *Server) listImages(c *echo.Context) error {
	key := caller(c)
	list, err := s.deps.Images.Catalog(c.Request().Context(), key.ID, key.Admin)
	if err != nil {
		return err
	}
	out := api.ImageList{Images: []api.Image{}, Buildable: images.Recipes()}
	for _, img := range list {
		out.Images = append(out.Images, toImage(img))
	}
	sort.Slice(out.Images, func(i, j int) bool { return out.Images[i].Name < out.Images[j].Name })
	return c.JSON(http.StatusOK, out)
}

// buildImage builds an image from its recipe, streaming progress as NDJSON.
func (s *Server) buildImage(c *echo.Context) error {
	var req api.BuildImageRequest
	if err := bind(c, &req, false); err != nil {
		return err
	}
	if !images.Known(req.Name) {
		return badRequest("name: bothy builds " + strings.Join(images.Recipes(), ", ") + "; got " + req.Name)
	}
	w := c.Response()
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	var mu sync.Mutex
	enc := json.NewEncoder(w)
	emit := func(ev api.BuildEvent) {
		mu.Lock()
		defer mu.Unlock()
		_ = enc.Encode(ev)
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
	}
	img, err := s.deps.Images.Make(c.Request().Context(), req.Name, req.Force, func(line string) {
		emit(api.BuildEvent{Type: "progress", Line: line})
	})
	if err != nil {
		_, code, msg := classify(err)
		if code == api.CodeInternal {
			msg = err.Error() // a build failure's cause is the admin's to see
		}
		emit(api.BuildEvent{Type: "error", Error: &api.Error{Code: code, Message: msg}})
		return nil
	}
	out := toImage(img)
	emit(api.BuildEvent{Type: "done", Image: &out})
	return nil
}

func (s *Server) removeImage(c *echo.Context) error {
	name := c.Param("*")
	if name == "" {
		return badRequest("name the image to remove")
	}
	if err := s.deps.Images.Remove(c.Request().Context(), name); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func toImage(img images.Image) api.Image {
	return api.Image{ID: img.ID, Name: img.Name, Tags: img.Tags, SizeBytes: img.Size, CreatedAt: img.Created.UTC(),
		Recipe: img.Recipe, Builtin: img.Builtin}
}
