// An alert rule whose query file is misspelled: the real compiler fails,
// and so must the check.
var query = loadTextContent('../../../../infra/monitoring/alerts/rotation-faild.kql')

output q string = query
