@testable import S3Responses

/// S3's XML answers: errors, listings and multipart uploads.
enum S3Targets {
    static let s3XML = FuzzTarget(
        name: "s3-xml",
        summary: "S3XML.parse and S3ListingPage: declarations, comments, CDATA, entities, nesting; every text must survive escape and parse",
        seeds: {
            [
                ("listing", """
                <?xml version="1.0" encoding="UTF-8"?>
                <ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>bucket</Name><Prefix>run/</Prefix>\
                <KeyCount>2</KeyCount><MaxKeys>1000</MaxKeys><EncodingType>url</EncodingType><IsTruncated>true</IsTruncated>\
                <NextContinuationToken>1/a+b==</NextContinuationToken>\
                <Contents><Key>run/ep1%20ba%C3%BC+%2B.pt</Key><LastModified>2024-05-01T10:00:00.123Z</LastModified>\
                <ETag>&quot;9b2cf535f27731c974343645a3985328&quot;</ETag><Size>22192</Size><StorageClass>STANDARD</StorageClass></Contents>\
                <Contents><Key><![CDATA[run/x&y]]></Key><Size>1</Size><LastModified>2024-05-01T10:00:00Z</LastModified></Contents>\
                <CommonPrefixes><Prefix>run/sub/</Prefix></CommonPrefixes><!-- a comment --><Empty/></ListBucketResult>
                """),
                ("error", """
                <?xml version="1.0" encoding="UTF-8"?>
                <Error><Code>PermanentRedirect</Code><Message>The bucket is in this region: &#x65;u-west-1 &amp; &#233;</Message>\
                <Region>eu-west-1</Region><RequestId>4442587FB7D0A2F9</RequestId></Error>
                """),
                ("create-multipart", """
                <InitiateMultipartUploadResult xmlns='http://s3.amazonaws.com/doc/2006-03-01/'><Bucket>b</Bucket>\
                <Key>k</Key><UploadId>VXBsb2FkIElE</UploadId></InitiateMultipartUploadResult>
                """),
                ("complete-multipart", """
                <!DOCTYPE x><CompleteMultipartUploadResult><Location>http://b.s3/k</Location><Bucket>b</Bucket><Key>k</Key>\
                <ETag>"3858f62230ac3c915f300c664312c11f-9"</ETag></CompleteMultipartUploadResult>
                """),
            ].map { ($0.0, Array($0.1.utf8)) }
        },
        run: { bytes in
            let document = Array(bytes)
            if let root = S3XML.parse(document) { checkTexts(root) }
            _ = try? S3ListingPage(parsing: document, bucket: "bucket", location: "s3://bucket/")
        }
    )

    /// Every text of the tree, escaped as a request body escapes it, parses back to itself.
    private static func checkTexts(_ element: S3XML) {
        let wrapped = "<a>" + S3XML.escape(element.text) + "</a>"
        let parsed = S3XML.parse(Array(wrapped.utf8))?.text
        FuzzCheck.expect(parsed == element.text, "the text \"\(element.text)\" of <\(element.name)> survives escape and parse, not \(parsed.map { "\"\($0)\"" } ?? "nil")")
        for child in element.children { checkTexts(child) }
    }
}
