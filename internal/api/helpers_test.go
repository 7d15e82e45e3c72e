package api

import "github.com/sluice-db/sluice/internal/config"

func configLimits(w, h, c float64) config.Limits {
	return config.Limits{Warning: w, High: h, Critical: c}
}
