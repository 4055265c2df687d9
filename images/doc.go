// Package images makes sure the images sandboxes run on exist in the engine.
//
// No registry is reachable on the machines bothy is built for, so the images
// it needs are built locally from recipes: a root filesystem (debootstrap, or
// busybox-static) imported into the engine and labelled with a hash of its recipe,
// so that an unchanged recipe is never rebuilt. Any other reference is pulled when
// a registry answers, and refused with a clear error when none does. Concurrent
// ensures of one image share one build.
package images
