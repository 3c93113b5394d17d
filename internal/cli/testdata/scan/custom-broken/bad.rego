# METADATA
# custom:
#   id: 9002
#   severity: low
package acme.bad

deny contains msg if {
	msg := "unfinished"
