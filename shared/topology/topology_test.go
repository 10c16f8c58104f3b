package topology

import "testing"

func TestLocationOf(t *testing.T) {
	tests := []struct {
		name   string
		labels map[string]string
		want   Location
	}{
		{"ga labels", map[string]string{ZoneLabel: "eu-west-1a", RegionLabel: "eu-west-1"}, Location{"eu-west-1a", "eu-west-1"}},
		{"beta fallback", map[string]string{BetaZoneLabel: "us-east1-b", BetaRegionLabel: "us-east1"}, Location{"us-east1-b", "us-east1"}},
		{"ga wins over beta", map[string]string{ZoneLabel: "a", BetaZoneLabel: "b"}, Location{Zone: "a"}},
		{"empty ga value falls back", map[string]string{ZoneLabel: "", BetaZoneLabel: "b"}, Location{Zone: "b"}},
		{"nothing", nil, Location{}},
	}
	for _, tt := range tests {
		if got := LocationOf(tt.labels); got != tt.want {
			t.Errorf("%s: LocationOf() = %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

func TestCrossing(t *testing.T) {
	a1 := Location{"eu-west-1a", "eu-west-1"}
	b1 := Location{"eu-west-1b", "eu-west-1"}
	a2 := Location{"us-east-1a", "us-east-1"}
	unknown := Location{}
	regionOnly := Location{Region: "eu-west-1"}
	tests := []struct {
		name                 string
		from, to             Location
		wantZone, wantRegion bool
	}{
		{"same zone", a1, a1, false, false},
		{"other zone same region", a1, b1, true, false},
		{"other region", a1, a2, true, true},
		{"unknown destination", a1, unknown, false, false},
		{"unknown source", unknown, b1, false, false},
		{"region only", regionOnly, a1, false, false},
	}
	for _, tt := range tests {
		if got := tt.from.CrossesZone(tt.to); got != tt.wantZone {
			t.Errorf("%s: CrossesZone = %v, want %v", tt.name, got, tt.wantZone)
		}
		if got := tt.from.CrossesRegion(tt.to); got != tt.wantRegion {
			t.Errorf("%s: CrossesRegion = %v, want %v", tt.name, got, tt.wantRegion)
		}
	}
}
