package app

import (
	"testing"

	"github.com/zonetoll/zonetoll/shared/metricstest"
	"github.com/zonetoll/zonetoll/shared/servicetest"
)

func TestRunServesSharedEndpoints(t *testing.T) {
	svc := servicetest.Start(t, Spec(), nil)
	fams := metricstest.Scrape(t, svc.URL+"/metrics")
	if v, ok := fams.Value("zonetoll_build_info", map[string]string{"service": "costcalc"}); !ok || v != 1 {
		t.Errorf("zonetoll_build_info{service=\"costcalc\"} = %v (found %v), want 1", v, ok)
	}
}

func TestRunHelpListsSettings(t *testing.T) {
	servicetest.HelpLists(t, Spec(), "ZONETOLL_LOG_LEVEL", "ZONETOLL_HTTP_LISTEN_ADDRESS")
}
