package kubernetes

import (
	"context"
	"errors"

	cerrdefs "github.com/containerd/errdefs"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var getOpts = metav1.GetOptions{}

func isNotFound(err error) bool { return err != nil && apierrors.IsNotFound(err) }

// classify gives an error of the API server the class bothy's callers test
// for (containerd/errdefs), keeping its message.
func classify(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	case apierrors.IsNotFound(err):
		return cerrdefs.ErrNotFound.WithMessage(err.Error())
	case apierrors.IsAlreadyExists(err), apierrors.IsConflict(err):
		return cerrdefs.ErrConflict.WithMessage(err.Error())
	case apierrors.IsInvalid(err), apierrors.IsBadRequest(err):
		return cerrdefs.ErrInvalidArgument.WithMessage(err.Error())
	case apierrors.IsForbidden(err), apierrors.IsUnauthorized(err):
		return cerrdefs.ErrPermissionDenied.WithMessage(err.Error())
	case apierrors.IsTooManyRequests(err), apierrors.IsServerTimeout(err), apierrors.IsTimeout(err),
		apierrors.IsServiceUnavailable(err), apierrors.IsInternalError(err):
		return cerrdefs.ErrUnavailable.WithMessage(err.Error())
	}
	return err
}
