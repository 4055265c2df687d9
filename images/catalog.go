package images

import (
	"context"
	"time"

	"github.com/bothy/bothy/runtime"
)

// Image is what bothy tells a key of one image.
type Image struct {
	ID      string
	Name    string // the first tag
	Tags    []string
	Size    int64
	Created time.Time
	// Recipe is the hash of the recipe the image was built from, for images
	// bothy built; Builtin says bothy knows that recipe by this name.
	Recipe  string
	Builtin bool
}

func describe(img runtime.Image) Image {
	out := Image{ID: img.ID, Tags: img.Tags, Size: img.Size, Created: img.Created, Recipe: img.Labels[runtime.LabelRecipe]}
	if len(img.Tags) > 0 {
		out.Name = img.Tags[0]
	}
	out.Builtin = out.Recipe != "" && Known(out.Name)
	return out
}

// Catalog lists the tagged images owner may use; admin sees every one.
func (b *Builder) Catalog(ctx context.Context, owner string, admin bool) ([]Image, error) {
	list, err := b.eng.ImageList(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Image, 0, len(list))
	for _, img := range list {
		if admin || Usable(img, owner) {
			out = append(out, describe(img))
		}
	}
	return out, nil
}

// Make makes the image of recipe name exist (force: rebuilds it even if it
// does), reporting progress, and describes it.
func (b *Builder) Make(ctx context.Context, name string, force bool, progress func(string)) (Image, error) {
	ensure := b.Ensure
	if force {
		ensure = b.Build
	}
	img, err := ensure(ctx, name, progress)
	if err != nil {
		return Image{}, err
	}
	return describe(img), nil
}
